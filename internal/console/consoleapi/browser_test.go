package consoleapi_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/demo"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

// The browser tests drive Debian's Chromium through chromedp against two
// real nodes started in process — the demo's bank (guest) and partner
// (host) over mutual TLS, with the bundled data, consents, PSI, training,
// the stable model and a drained budget — and a console node for each
// party that calls its services with the party's client certificate.
//
// They skip only when no Chromium is installed (CI installs Debian's
// chromium). FEDRISK_CONSOLE_SHOTS=DIR saves a screenshot of every page
// visited; a failing step always saves one and logs its path.

// chromiumPath finds the browser or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FEDRISK_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("Chromium is not installed (Debian: apt-get install chromium); the browser tests need it")
	return ""
}

// federation is the demo's two nodes with a console each.
type federation struct {
	d                    *demo.Demo
	bankURL, partnerURL  string // consoles
	bankToken, partToken string // admin tokens of each party
	bankAnalyst          string
	secondVersion        string
	trainJob, psiJob     string
	consentedSubject     string
}

func startFederation(t *testing.T, ctx context.Context) *federation {
	t.Helper()
	var out strings.Builder
	d, err := demo.Start(ctx, demo.Options{Dir: t.TempDir(), Customers: 1200, Missing: 0.05, Withdrawn: 0.03, Samples: 10, Out: &out, Logs: &syncBuffer{}})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Cleanup(func() { d.Close() })
	f := &federation{d: d, trainJob: d.Result.TrainJob, psiJob: d.Result.PSIJob}
	for s := range d.ActiveConsents() {
		f.consentedSubject = s
		break
	}
	if f.consentedSubject == "" {
		t.Fatal("the demo left no consented subject to score")
	}
	mkToken := func(p *demo.Party, name string, role auth.Role) string {
		secret, _, err := auth.NewTokens(sqlauth.New(p.Node.DB())).Create(ctx, name, role)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	f.bankToken = mkToken(d.Guest, "console-admin", auth.RoleAdmin)
	f.bankAnalyst = mkToken(d.Guest, "console-analyst", auth.RoleAnalyst)
	f.partToken = mkToken(d.Host, "console-admin", auth.RoleAdmin)
	f.bankURL = startPartyConsole(t, d, d.Guest, "guest")
	f.partnerURL = startPartyConsole(t, d, d.Host, "host")

	// A second version of the model, so there is something to promote
	// and roll back: a short training run on the same PSI job.
	tc := d.Guest.Clients[config.ServiceServing]
	var job trainjobapi.JobBody
	if _, err := tc.Do(ctx, "POST", "/train/v1/jobs", trainjobapi.CreateBody{Role: "guest", Algo: "hetero-lr", Peer: "partner",
		File: "input/customers.csv", HostFile: "input/customers.csv", PSIJob: d.Result.PSIJob, ModelID: demo.ModelID, Epochs: 3}, &job); err != nil {
		t.Fatalf("second training: %v", err)
	}
	for job.Status != "succeeded" {
		if job.Status == "failed" || job.Status == "cancelled" {
			t.Fatalf("second training %s: %s", job.Status, job.Error)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := tc.Do(ctx, "GET", "/train/v1/jobs/"+job.ID, nil, &job); err != nil {
			t.Fatal(err)
		}
	}
	f.secondVersion = job.ModelVersion
	return f
}

// startPartyConsole runs a console-only node for party p, calling its
// services over TLS with the party's client certificate.
func startPartyConsole(t *testing.T, d *demo.Demo, p *demo.Party, role string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir = p.Name, role, t.TempDir()
	cfg.Services = []string{config.ServiceConsole}
	cfg.Addrs[config.ServiceConsole] = "127.0.0.1:0"
	files := d.Certs.Parties[p.Name]
	cfg.TLS = config.TLS{CAFile: d.Certs.CACert, ClientCertFile: files.ClientCert, ClientKeyFile: files.ClientKey}
	cfg.Console.ConsentURL = p.URLs[config.ServiceConsent]
	cfg.Console.PSIURL = p.URLs[config.ServicePSI]
	cfg.Console.ServingURL = p.URLs[config.ServiceServing]
	cfg.HTTP.ShutdownGrace = 5 * time.Second
	n := runNode(t, cfg, nil)
	return "http://" + n.Addr(config.ServiceConsole)
}

// browser is one Chromium tab.
type browser struct {
	ctx   context.Context
	shots string // FEDRISK_CONSOLE_SHOTS, or ""
	fails string // where failure screenshots go
}

// cspWatch records Content-Security-Policy violations on every page: it
// runs before the page's own scripts, injected through DevTools.
const cspWatch = `window.__csp = []; document.addEventListener('securitypolicyviolation', function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });`

func newBrowser(t *testing.T, ctx context.Context) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: bctx, shots: os.Getenv("FEDRISK_CONSOLE_SHOTS")}
	dir, err := os.MkdirTemp("", "fedrisk-console-failures-")
	if err != nil {
		t.Fatal(err)
	}
	b.fails = dir
	t.Cleanup(func() {
		if entries, _ := os.ReadDir(dir); len(entries) == 0 {
			os.Remove(dir)
		}
	})
	if _, err := chromedp.Run(bctx, chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: cspWatch})
		return chromedp.Void{}, err
	})); err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	return b
}

// step runs one named part of the scenario; a failure saves a screenshot.
func (b *browser) step(t *testing.T, name string, fn func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		defer func() {
			if t.Failed() {
				b.screenshot(t, b.fails, strings.ReplaceAll(name, " ", "-"))
			}
		}()
		fn(t)
	})
}

func (b *browser) screenshot(t *testing.T, dir, name string) {
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}

// actionTimeout bounds one browser action (a missing element fails the
// step instead of waiting for the whole test's deadline).
const actionTimeout = 30 * time.Second

func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %q: %v", js, err)
	}
	return v
}

func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// open navigates to a URL and waits for the page.
func (b *browser) open(t *testing.T, u string) {
	t.Helper()
	b.do(t, chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("footer")))
	b.checkPage(t)
}

// submit clicks a button (or presses Enter in a field) that loads another
// page, and waits until the new page has loaded.
func (b *browser) submit(t *testing.T, action chromedp.Action[chromedp.Void]) {
	t.Helper()
	b.do(t, chromedp.Evaluate[chromedp.Void](`window.__old = true`), action)
	b.waitFor(t, `!window.__old && document.readyState === 'complete' && !!document.querySelector('footer')`)
	b.checkPage(t)
}

// waitFor polls a JavaScript condition until it holds (30 s at most);
// evaluation errors while a page is being replaced count as "not yet".
func (b *browser) waitFor(t *testing.T, js string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		select {
		case <-b.ctx.Done():
			t.Fatalf("waiting for %s: %v", js, b.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("waited 30 s for %s (last error: %v)", js, last)
}

func (b *browser) click(t *testing.T, sel string) {
	t.Helper()
	b.submit(t, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// a11y is run on every page: labelled controls, named buttons and links,
// WCAG AA text contrast, no inline style or script, no CSP violation.
const a11y = `(() => {
  const problems = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby'))) problems.push('unlabelled ' + el.tagName + '#' + el.id);
  }
  for (const el of document.querySelectorAll('button, a')) {
    if (!el.textContent.trim() && !el.getAttribute('aria-label')) problems.push('nameless ' + el.tagName);
  }
  const rgb = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(parseFloat);
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return { l: 0.2126 * f(p[0]) + 0.7152 * f(p[1]) + 0.0722 * f(p[2]), a: p.length > 3 ? p[3] : 1 }; };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const v = rgb(getComputedStyle(e).backgroundColor); if (v && v.a > 0.5) return v.l; } return 1; };
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') || el.closest('.skip') || el.tagName === 'OPTION') continue;
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const r = el.getBoundingClientRect(); if (!r.width || !r.height) continue;
    const cs = getComputedStyle(el); const fg = rgb(cs.color); if (!fg) continue;
    const b = bg(el); const ratio = (Math.max(fg.l, b) + 0.05) / (Math.min(fg.l, b) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    if (ratio < ((size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5)) problems.push('contrast ' + ratio.toFixed(2) + ' on "' + el.textContent.trim().slice(0, 30) + '"');
  }
  if (document.querySelector('[style]')) problems.push('inline style attribute');
  for (const s of document.scripts) if (!s.src) problems.push('inline script');
  for (const v of (window.__csp || [])) problems.push('CSP violation: ' + v);
  return problems;
})()`

// checkPage runs the page checks and saves a screenshot when asked.
func (b *browser) checkPage(t *testing.T) {
	t.Helper()
	if problems := eval[[]string](t, b, a11y); len(problems) > 0 {
		t.Errorf("%s: %s", eval[string](t, b, `location.pathname`), strings.Join(problems, "; "))
	}
	if b.shots != "" {
		name := strings.Trim(strings.NewReplacer("/", "_", "?", "_", "=", "_", "&", "_").Replace(eval[string](t, b, `location.port + location.pathname + location.search`)), "_")
		b.screenshot(t, b.shots, name)
	}
}

func TestConsoleInBrowser(t *testing.T) {
	chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fed := startFederation(t, ctx)
	b := newBrowser(t, ctx)

	b.step(t, "log in with the keyboard", func(t *testing.T) {
		b.open(t, fed.bankURL+"/login")
		// The first Tab lands on the skip link, then the controls in order.
		b.do(t, chromedp.KeyEvent(kb.Tab))
		if cls := eval[string](t, b, `document.activeElement.className`); cls != "skip" {
			t.Errorf("first Tab focused %q, want the skip link", cls)
		}
		var order []string
		for range 4 {
			b.do(t, chromedp.KeyEvent(kb.Tab))
			order = append(order, eval[string](t, b, `document.activeElement.id || document.activeElement.tagName`))
			if o := eval[string](t, b, `getComputedStyle(document.activeElement).outlineStyle`); o == "none" {
				t.Errorf("no visible focus on %s", order[len(order)-1])
			}
		}
		if !strings.Contains(strings.Join(order, " "), "lang-select lang-switch token") {
			t.Errorf("Tab order %v", order)
		}
		b.submit(t, chromedp.SendKeys(chromedp.ID("token"), fed.bankToken+kb.Enter))
		if h := b.text(t, "h1"); h != "Overview" {
			t.Fatalf("after login: %q", h)
		}
		if user := b.text(t, "#user"); !strings.Contains(user, "console-admin") || !strings.Contains(user, "admin") {
			t.Errorf("header user %q", user)
		}
		if n := eval[int](t, b, `document.querySelectorAll('#health tbody tr').length`); n != 3 {
			t.Errorf("%d services in the health table", n)
		}
		if ready := eval[int](t, b, `[...document.querySelectorAll('#health .badge.ok')].length`); ready != 6 {
			t.Errorf("%d of 6 health and readiness badges are green", ready)
		}
		if eval[bool](t, b, `document.cookie.includes('fedrisk')`) {
			t.Error("the session cookie is readable by scripts")
		}
	})

	b.step(t, "visit every page", func(t *testing.T) {
		b.open(t, fed.bankURL+"/")
		links := eval[[]string](t, b, `[...document.querySelectorAll('header nav a')].map(a => a.getAttribute('href'))`)
		if len(links) != 9 {
			t.Fatalf("navigation %v", links)
		}
		for _, href := range links {
			b.click(t, fmt.Sprintf(`header nav a[href="%s"]`, href))
			if cur := eval[string](t, b, `document.querySelector('header nav a[aria-current=page]').getAttribute('href')`); cur != href {
				t.Errorf("on %s the navigation marks %s", href, cur)
			}
			if eval[bool](t, b, `!!document.querySelector('#error-message')`) {
				t.Errorf("%s: %s", href, b.text(t, "#error-message"))
			}
		}
		// What the demo made is there.
		b.open(t, fed.bankURL+"/psi/"+fed.psiJob)
		if got := b.text(t, "#psi-intersection"); got != strconv.FormatInt(fed.d.Result.Intersection, 10) && strings.ReplaceAll(got, ",", "") != strconv.FormatInt(fed.d.Result.Intersection, 10) {
			t.Errorf("PSI intersection %q, want %d", got, fed.d.Result.Intersection)
		}
		b.open(t, fed.bankURL+"/models")
		if !strings.Contains(b.text(t, "#models"), "v"+fed.d.Result.ModelVersion) {
			t.Errorf("the stable model is not listed: %s", b.text(t, "#models"))
		}
		b.open(t, fed.bankURL+"/audit")
		if s := b.text(t, "#chain-status"); s != "chain intact" {
			t.Errorf("audit chain: %q", s)
		}
		b.open(t, fed.bankURL+"/security")
		if s := b.text(t, "#security"); !strings.Contains(s, "standard") || !strings.Contains(s, "https") {
			t.Errorf("security table: %s", s)
		}
	})

	subject := "CONSOLE-TEST-110101199003071234"
	b.step(t, "grant and withdraw a consent", func(t *testing.T) {
		b.open(t, fed.bankURL+"/consents")
		b.do(t,
			chromedp.SendKeys(chromedp.ID("grant-subject"), subject),
			chromedp.SendKeys(chromedp.ID("grant-party"), "partner"),
			chromedp.SendKeys(chromedp.ID("grant-categories"), "telecom.usage, telecom.billing"),
			chromedp.SetValue(chromedp.ID("grant-channel"), "branch"),
		)
		b.click(t, "#grant-submit")
		if s := b.text(t, "#confirm-summary"); !strings.Contains(s, demo.Purpose) || !strings.Contains(s, "partner") {
			t.Fatalf("confirmation: %s", s)
		}
		b.click(t, "#confirm")
		if s := b.text(t, "#consent-status"); s != "active" {
			t.Fatalf("after the grant: status %q", s)
		}
		if s := b.text(t, "#receipt-status"); !strings.Contains(s, "signature valid") {
			t.Errorf("receipt: %q", s)
		}
		if !strings.Contains(b.text(t, "#flash"), "recorded") {
			t.Errorf("no confirmation message")
		}
		b.click(t, "#withdraw")
		if s := b.text(t, "#confirm-summary"); !strings.Contains(s, "active") {
			t.Errorf("withdraw confirmation: %s", s)
		}
		b.click(t, "#confirm")
		if s := b.text(t, "#consent-status"); s != "withdrawn" {
			t.Errorf("after the withdrawal: status %q", s)
		}
		// Looked up by POST: the identifier never reaches an address.
		b.open(t, fed.bankURL+"/consents")
		b.do(t, chromedp.SendKeys(chromedp.ID("lookup-subject"), subject))
		b.click(t, "#lookup-submit")
		if s := b.text(t, "#consent-list"); !strings.Contains(s, "withdrawn") {
			t.Errorf("lookup: %s", s)
		}
		history := eval[[]string](t, b, `performance.getEntriesByType('navigation').map(e => e.name).concat([location.href])`)
		for _, h := range history {
			if strings.Contains(h, "CONSOLE-TEST") || strings.Contains(h, "110101199003071234") {
				t.Errorf("the subject identifier is in an address: %s", h)
			}
		}
	})

	b.step(t, "promote and roll back a model", func(t *testing.T) {
		b.open(t, fed.bankURL+"/models/"+demo.ModelID)
		if s := b.text(t, "#label-stable"); s != "v"+fed.d.Result.ModelVersion {
			t.Fatalf("stable before: %q", s)
		}
		if s := b.text(t, "#canary-analysis"); !strings.Contains(s, "none yet") {
			t.Errorf("canary analysis: %q", s)
		}
		b.do(t, chromedp.SetValue(chromedp.ID("promote-version"), fed.secondVersion), chromedp.SetValue(chromedp.ID("promote-label"), "stable"))
		b.click(t, "#promote-submit")
		if s := b.text(t, "#confirm-summary"); !strings.Contains(s, fed.secondVersion) {
			t.Fatalf("promotion confirmation: %s", s)
		}
		b.click(t, "#confirm")
		if s := b.text(t, "#label-stable"); s != "v"+fed.secondVersion {
			t.Fatalf("stable after the promotion: %q", s)
		}
		b.do(t, chromedp.SetValue(chromedp.ID("rollback-label"), "stable"))
		b.click(t, "#rollback-submit")
		if s := b.text(t, "#confirm-summary"); !strings.Contains(s, fed.d.Result.ModelVersion) {
			t.Errorf("rollback confirmation does not name the version it goes back to: %s", s)
		}
		b.click(t, "#confirm")
		if s := b.text(t, "#label-stable"); s != "v"+fed.d.Result.ModelVersion {
			t.Errorf("stable after the rollback: %q", s)
		}
		if n := eval[int](t, b, `document.querySelectorAll('#history tbody tr').length`); n < 3 {
			t.Errorf("label history has %d changes", n)
		}
	})

	b.step(t, "score a subject", func(t *testing.T) {
		b.open(t, fed.bankURL+"/scoring")
		b.do(t, chromedp.SendKeys(chromedp.ID("score-subject"), fed.consentedSubject))
		b.click(t, "#score-submit")
		if eval[bool](t, b, `!!document.querySelector('#score-error')`) {
			t.Fatalf("score refused: %s", b.text(t, "#score-error"))
		}
		if p := b.text(t, "#probability"); !strings.HasSuffix(p, "%") {
			t.Errorf("probability %q", p)
		}
		score, err := strconv.Atoi(b.text(t, "#score"))
		if err != nil || score < 300 || score > 850 {
			t.Errorf("score %d %v", score, err)
		}
		if !eval[bool](t, b, `!!document.querySelector('#not-degraded')`) {
			t.Errorf("the score is degraded")
		}
		if n := eval[int](t, b, `document.querySelectorAll('#reasons svg rect').length`); n == 0 {
			t.Errorf("no reason bars")
		}
		if strings.Contains(eval[string](t, b, `location.href`), fed.consentedSubject) {
			t.Error("the subject is in the address")
		}
	})

	b.step(t, "charts render", func(t *testing.T) {
		b.open(t, fed.bankURL+"/training/"+fed.trainJob)
		if n := eval[int](t, b, `document.querySelectorAll('#curves svg.linechart').length`); n != 2 {
			t.Fatalf("%d training charts", n)
		}
		if n := eval[int](t, b, `[...document.querySelectorAll('#curves polyline')].filter(p => p.getAttribute('points').split(' ').length >= 2 && p.getBoundingClientRect().width > 100).length`); n != 3 {
			t.Errorf("%d drawn curves (loss, AUC, KS)", n)
		}
		b.open(t, fed.bankURL+"/models/"+demo.ModelID+"/versions/"+fed.d.Result.ModelVersion+"?role=guest")
		if n := eval[int](t, b, `document.querySelectorAll('#importance svg rect').length`); n < 5 {
			t.Errorf("%d feature importance bars", n)
		}
		b.open(t, fed.bankURL+"/psi/"+fed.psiJob)
		if n := eval[int](t, b, `document.querySelectorAll('svg.barchart rect').length`); n < 3 {
			t.Errorf("%d PSI count bars", n)
		}
	})

	b.step(t, "the partner's budgets", func(t *testing.T) {
		b.open(t, fed.partnerURL+"/login")
		b.do(t, chromedp.SendKeys(chromedp.ID("token"), fed.partToken))
		b.click(t, "#login-submit")
		b.open(t, fed.partnerURL+"/budgets")
		if n := eval[int](t, b, `document.querySelectorAll('#budget-histogram svg rect').length`); n != 10 {
			t.Errorf("%d histogram bars", n)
		}
		if low, err := strconv.Atoi(b.text(t, "#low-count")); err != nil || low < 1 {
			t.Errorf("subjects below 0.2: %v %v (the demo drained one)", low, err)
		}
		if n := eval[int](t, b, `document.querySelectorAll('#low-list tbody tr').length`); n < 1 {
			t.Errorf("the drained subject is not listed")
		}
		if s := b.text(t, "#outcomes"); !strings.Contains(s, "released") {
			t.Errorf("releases: %s", s)
		}
		if s := b.text(t, "h1"); s != "Privacy budgets" {
			t.Errorf("h1 %q", s)
		}
	})

	b.step(t, "live progress", func(t *testing.T) {
		// A host job waits for its guest: the page refreshes itself until
		// the job is cancelled, without a reload.
		hc := fed.d.Host.Clients[config.ServiceServing]
		var job trainjobapi.JobBody
		if _, err := hc.Do(ctx, "POST", "/train/v1/jobs", trainjobapi.CreateBody{Role: "host", Peer: "bank", File: "input/customers.csv"}, &job); err != nil {
			t.Fatal(err)
		}
		b.open(t, fed.partnerURL+"/training/"+job.ID)
		if !eval[bool](t, b, `!!document.querySelector('#trainjob[data-live]')`) {
			t.Fatalf("a waiting job's page is not live (status %s)", b.text(t, "#train-status"))
		}
		b.do(t, chromedp.Evaluate[chromedp.Void](`window.__same = true`))
		if _, err := hc.Do(ctx, "POST", "/train/v1/jobs/"+job.ID+"/cancel", struct{}{}, nil); err != nil {
			t.Fatal(err)
		}
		b.waitFor(t, `document.querySelector('#train-status').textContent.trim() === 'cancelled'`)
		if !eval[bool](t, b, `window.__same === true && !document.querySelector('#trainjob[data-live]')`) {
			t.Error("the page reloaded, or still polls after the job ended")
		}
	})

	b.step(t, "switch language", func(t *testing.T) {
		b.open(t, fed.bankURL+"/models")
		b.do(t, chromedp.SetValue(chromedp.ID("lang-select"), "zh-CN"))
		b.click(t, "#lang-switch")
		if lang := eval[string](t, b, `document.documentElement.lang`); lang != "zh-CN" {
			t.Errorf("lang %q", lang)
		}
		if h := b.text(t, "h1"); h != "模型" {
			t.Errorf("h1 in Chinese: %q", h)
		}
		if path := eval[string](t, b, `location.pathname`); path != "/models" {
			t.Errorf("the switch went to %s", path)
		}
		b.open(t, fed.bankURL+"/")
		if h := b.text(t, "h1"); h != "总览" {
			t.Errorf("the language did not stick: %q", h)
		}
		b.open(t, fed.bankURL+"/budgets")
		b.do(t, chromedp.SetValue(chromedp.ID("lang-select"), "en"))
		b.click(t, "#lang-switch")
		if h := b.text(t, "h1"); h != "Privacy budgets" {
			t.Errorf("back in English: %q", h)
		}
	})

	b.step(t, "an analyst sees but cannot act", func(t *testing.T) {
		b.click(t, "#logout")
		b.open(t, fed.bankURL+"/login")
		b.do(t, chromedp.SendKeys(chromedp.ID("token"), fed.bankAnalyst))
		b.click(t, "#login-submit")
		b.open(t, fed.bankURL+"/models/"+demo.ModelID)
		if eval[bool](t, b, `!!document.querySelector('#promote-submit, #rollback-submit')`) {
			t.Error("an analyst is offered promote or roll back")
		}
		if eval[bool](t, b, `!!document.querySelector('header nav a[href="/scoring"]')`) {
			t.Error("an analyst is offered the scoring playground")
		}
		b.open(t, fed.bankURL+"/consents")
		if eval[bool](t, b, `!!document.querySelector('#grant-submit')`) {
			t.Error("an analyst is offered the grant form")
		}
	})

	b.step(t, "export the intersection", func(t *testing.T) {
		u := newUser(t, fed.bankURL)
		u.login(fed.bankToken)
		u.get("/psi/" + fed.psiJob)
		p := u.post("/psi/"+fed.psiJob+"/export", url.Values{})
		if p.status != 200 || !strings.Contains(p.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export: %d %s", p.status, p.body[:min(200, len(p.body))])
		}
		rows, err := csv.NewReader(strings.NewReader(p.body)).ReadAll()
		if err != nil || int64(len(rows)-1) != fed.d.Result.Intersection {
			t.Errorf("export: %d rows, want %d (%v)", len(rows)-1, fed.d.Result.Intersection, err)
		}
	})
}
