package consoleapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/console/consoleapi"
)

// fixture is one party's services with AUTH_REQUIRED=true, a console in a
// node of its own calling them, and a token per role.
type fixture struct {
	console string
	tokens  map[auth.Role]string
	logs    *syncBuffer // the console node's log
	svcLogs *syncBuffer // the services' log
}

const purposeID = "credit_risk_assessment"

func newFixture(t *testing.T, authRequired bool) *fixture {
	t.Helper()
	f := &fixture{tokens: map[auth.Role]string{}, logs: &syncBuffer{}, svcLogs: &syncBuffer{}}
	scfg := servicesConfig(t, "bank", "guest", authRequired)
	svc := runNode(t, scfg, slog.New(slog.NewJSONHandler(f.svcLogs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	toks := auth.NewTokens(sqlauth.New(svc.DB()))
	for _, r := range auth.Roles() {
		secret, _, err := toks.Create(context.Background(), "t-"+string(r), r)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[r] = secret
	}
	c := apiclient.New("http://"+svc.Addr(config.ServiceConsent), nil)
	c.Token = f.tokens[auth.RoleAdmin]
	if _, err := c.Do(context.Background(), "POST", "/consent/v1/purposes", consentapi.PurposeBody{
		ID: purposeID, Description: "credit risk", PolicyText: "We assess credit risk with partner data."}, nil); err != nil {
		t.Fatal(err)
	}
	ccfg := consoleConfig(t, scfg, svc)
	con := runNode(t, ccfg, slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	f.console = "http://" + con.Addr(config.ServiceConsole)
	return f
}

func TestLoginAndRoles(t *testing.T) {
	f := newFixture(t, true)
	anon := newUser(t, f.console)
	if p := anon.get("/"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/login" {
		t.Fatalf("GET / without a session: %d %s", p.status, p.header.Get("Location"))
	}
	if p := anon.get("/consents"); p.status != http.StatusSeeOther {
		t.Errorf("GET /consents without a session: %d", p.status)
	}
	if p := anon.get("/psi/live"); p.status != http.StatusUnauthorized {
		t.Errorf("live fragment without a session: %d, want 401", p.status)
	}
	if p := anon.login("frk_wrong"); p.status != http.StatusUnauthorized || !strings.Contains(p.body, `id="login-error"`) {
		t.Errorf("wrong token: %d", p.status)
	}
	if p := anon.login(""); p.status != http.StatusForbidden {
		t.Errorf("tokenless login with AUTH_REQUIRED=true: %d, want 403", p.status)
	}
	if strings.Contains(anon.get("/login").body, `id="login-tokenless"`) {
		t.Error("the login page offers the tokenless button with AUTH_REQUIRED=true")
	}

	for _, tt := range []struct {
		role     auth.Role
		allowed  []string // pages that answer 200
		refused  []string // pages that answer 403
		grant    bool     // the grant form is offered
		navItems int
	}{
		{auth.RoleAdmin, []string{"/", "/consents", "/psi", "/training", "/models", "/scoring", "/budgets", "/audit", "/security"}, nil, true, 9},
		{auth.RoleOperator, []string{"/", "/consents", "/scoring", "/audit"}, nil, true, 9},
		{auth.RoleAnalyst, []string{"/", "/consents", "/psi", "/models", "/audit"}, []string{"/scoring"}, false, 8},
		{auth.RolePartner, []string{"/", "/security"}, []string{"/consents", "/psi", "/models", "/audit", "/budgets"}, false, 2},
	} {
		t.Run(string(tt.role), func(t *testing.T) {
			u := newUser(t, f.console)
			p := u.login(f.tokens[tt.role])
			if p.status != http.StatusSeeOther || p.header.Get("Location") != "/" {
				t.Fatalf("login: %d %s", p.status, p.body)
			}
			for _, path := range tt.allowed {
				if p := u.get(path); p.status != 200 {
					t.Errorf("GET %s: %d", path, p.status)
				}
			}
			for _, path := range tt.refused {
				if p := u.get(path); p.status != http.StatusForbidden {
					t.Errorf("GET %s: %d, want 403", path, p.status)
				}
			}
			home := u.get("/")
			if n := strings.Count(home.body, "<li><a href="); n != tt.navItems {
				t.Errorf("%d navigation items, want %d", n, tt.navItems)
			}
			if grant := strings.Contains(u.get("/consents").body, `action="/consents/grant"`); grant != tt.grant {
				t.Errorf("grant form offered: %v, want %v", grant, tt.grant)
			}
			if !tt.grant {
				u.get("/")
				p := u.post("/consents/grant", url.Values{"subject": {"s-1"}, "purpose": {purposeID}, "party": {"partner"},
					"categories": {"a"}, "channel": {"web"}, "collector": {"x"}})
				if p.status != http.StatusForbidden {
					t.Errorf("grant as %s: %d, want 403", tt.role, p.status)
				}
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	f := newFixture(t, true)
	u := newUser(t, f.console)
	u.get("/login")
	p := u.post("/login", url.Values{"token": {f.tokens[auth.RoleAnalyst]}})
	var sess *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "fedrisk_console_bank" {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure || sess.Path != "/" {
		t.Fatalf("session cookie over plain HTTP: %+v", sess)
	}
	if strings.Contains(sess.Value, f.tokens[auth.RoleAnalyst]) || len(sess.Value) < 40 {
		t.Errorf("the session cookie is not a random id: %q", sess.Value)
	}
	// Behind a TLS-terminating proxy the cookies get Secure and __Host-.
	v := newUser(t, f.console)
	v.get("/login", "X-Forwarded-Proto", "https")
	p = v.post("/login", url.Values{"token": {f.tokens[auth.RoleAnalyst]}}, "X-Forwarded-Proto", "https")
	found := false
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "__Host-fedrisk_console_bank" {
			found = c.Secure && c.HttpOnly && c.SameSite == http.SameSiteStrictMode
		}
	}
	if !found {
		t.Errorf("behind TLS: %v", p.header["Set-Cookie"])
	}
	// Logging out ends the session on the server.
	u.get("/")
	if p := u.post("/logout", url.Values{}); p.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", p.status)
	}
	if p := u.get("/"); p.status != http.StatusSeeOther {
		t.Errorf("after logout: %d", p.status)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, true)
	u := newUser(t, f.console)
	u.login(f.tokens[auth.RoleOperator])
	u.get("/consents")
	good := u.csrf()
	for _, tt := range []struct {
		name string
		form url.Values
		hdr  []string
		want int
	}{
		{"no token", url.Values{"csrf": {""}, "subject": {"s"}}, nil, http.StatusForbidden},
		{"wrong token", url.Values{"csrf": {strings.Repeat("A", len(good))}, "subject": {"s"}}, nil, http.StatusForbidden},
		{"cross-site", url.Values{"csrf": {good}, "subject": {"s"}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"other origin", url.Values{"csrf": {good}, "subject": {"s"}}, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"same origin", url.Values{"csrf": {good}, "subject": {"s"}}, []string{"Sec-Fetch-Site", "same-origin"}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if p := u.post("/consents/lookup", tt.form, tt.hdr...); p.status != tt.want {
				t.Errorf("%d, want %d", p.status, tt.want)
			}
		})
	}
	// Login without the login page's cookie token is refused too (no
	// login CSRF).
	other := newUser(t, f.console)
	if p := other.post("/login", url.Values{"csrf": {good}, "token": {f.tokens[auth.RoleAdmin]}}); p.status != http.StatusForbidden {
		t.Errorf("login without the login cookie: %d", p.status)
	}
	// A refused POST changed nothing: no grant went through.
	u.get("/consents")
	p := u.post("/consents/grant", url.Values{"csrf": {"x"}, "subject": {"csrf-subject"}, "purpose": {purposeID}, "party": {"partner"},
		"categories": {"a"}, "channel": {"web"}, "collector": {"x"}, "policy_version": {"1"}, "idempotency_key": {strings.Repeat("k", 20)}, "step": {"confirm"}})
	if p.status != http.StatusForbidden {
		t.Errorf("grant without CSRF: %d", p.status)
	}
	u.get("/consents")
	if p := u.post("/consents/lookup", url.Values{"subject": {"csrf-subject"}}); !strings.Contains(p.body, `id="no-consents"`) {
		t.Error("a grant without CSRF token recorded a consent")
	}
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	styleAttr    = regexp.MustCompile(`(?i)\sstyle\s*=`)
	handlerAttr  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleElem    = regexp.MustCompile(`(?i)<style[\s>]`)
)

func TestSecurityHeadersAndNoInlineCode(t *testing.T) {
	f := newFixture(t, false)
	u := newUser(t, f.console)
	if p := u.login(""); p.status != http.StatusSeeOther {
		t.Fatalf("tokenless login from loopback with AUTH_REQUIRED=false: %d", p.status)
	}
	for _, path := range []string{"/login", "/", "/consents", "/psi", "/training", "/models", "/scoring", "/budgets", "/audit", "/security", "/nowhere"} {
		p := u.get(path)
		if p.status != 200 && !(path == "/nowhere" && p.status == 404) && !(path == "/login" && p.status == http.StatusSeeOther) {
			t.Errorf("GET %s: %d", path, p.status)
		}
		h := p.header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") ||
			strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q", path, k, h.Get(k))
			}
		}
		for _, m := range inlineScript.FindAllString(p.body, -1) {
			if !strings.Contains(m, "src=") {
				t.Errorf("%s: inline script %q", path, m)
			}
		}
		if styleAttr.MatchString(p.body) || handlerAttr.MatchString(p.body) || styleElem.MatchString(p.body) {
			t.Errorf("%s: inline style or event handler", path)
		}
	}
	for _, asset := range []string{"/static/console.css", "/static/console.js"} {
		p := u.get(asset)
		if p.status != 200 || p.header.Get("Content-Security-Policy") == "" || len(p.body) < 100 {
			t.Errorf("%s: %d", asset, p.status)
		}
	}
}

// TestNoIdentifiersInURLsOrLogs: a subject identifier typed into the forms
// and the token used to log in never show up in a URL, a redirect or a log
// line of the console or the services.
func TestNoIdentifiersInURLsOrLogs(t *testing.T) {
	f := newFixture(t, true)
	const subject = "ID-SECRET-440101199001011234"
	u := newUser(t, f.console)
	token := f.tokens[auth.RoleOperator]
	u.login(token)
	u.get("/consents")
	review := u.post("/consents/grant", url.Values{"subject": {subject}, "purpose": {purposeID}, "party": {"partner"},
		"categories": {"telecom.usage"}, "channel": {"branch"}, "collector": {"clerk-7"}})
	if review.status != 200 || !strings.Contains(review.body, `id="confirm"`) {
		t.Fatalf("grant review: %d", review.status)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(review.body, -1) {
		form.Set(m[1], m[2])
	}
	done := u.post("/consents/grant", form)
	loc := done.header.Get("Location")
	if done.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/consents/cns_") {
		t.Fatalf("grant: %d %s", done.status, loc)
	}
	detail := u.get(loc)
	if !strings.Contains(detail.body, `id="consent-status"`) || !strings.Contains(detail.body, "signature valid") {
		t.Errorf("consent page after the grant lacks the status or a verified receipt:\n%s", f.logs.String())
	}
	if strings.Contains(detail.body, subject) {
		t.Error("the consent page shows the raw identifier")
	}
	// Replaying the confirmed form (a double submit) records nothing new.
	u.get("/consents")
	form.Set("csrf", u.csrf())
	if again := u.post("/consents/grant", form); again.header.Get("Location") != loc {
		t.Errorf("replayed grant went to %q, want %q", again.header.Get("Location"), loc)
	}
	u.get("/consents")
	found := u.post("/consents/lookup", url.Values{"subject": {subject}})
	if strings.Count(found.body, `class="secondary withdraw"`) != 1 {
		t.Errorf("lookup after the grant: want one active consent")
	}
	for _, logs := range []string{f.logs.String(), f.svcLogs.String()} {
		if strings.Contains(logs, subject) || strings.Contains(logs, "440101199001011234") {
			t.Error("a log holds the subject identifier")
		}
		if strings.Contains(logs, token) || strings.Contains(logs, token[4:20]) {
			t.Error("a log holds the API token")
		}
		if !strings.Contains(logs, `"route"`) {
			t.Error("no access log lines were captured: the check saw nothing")
		}
	}
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(line, "/consents/cns_") && !strings.Contains(line, "{id}") {
			t.Errorf("a raw path in the console's log: %s", line)
		}
	}
}

// TestTokenlessOnlyFromLoopback: with AUTH_REQUIRED=false a browser on
// another machine must still log in with a token.
func TestTokenlessOnlyFromLoopback(t *testing.T) {
	api, err := consoleapi.New(consoleapi.Options{Party: "bank", Role: "guest",
		ConsentURL: "http://127.0.0.1:1", PSIURL: "http://127.0.0.1:1", ServingURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Mount(mux)
	call := func(method, path, remote string, form url.Values, cookies []*http.Cookie) *httptest.ResponseRecorder {
		var body *strings.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, path, body)
		r.RemoteAddr = remote
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	for _, tt := range []struct {
		remote string
		want   int
	}{{"10.1.2.3:4444", http.StatusForbidden}, {"192.0.2.7:1", http.StatusForbidden}, {"127.0.0.1:5555", http.StatusSeeOther}, {"[::1]:5555", http.StatusSeeOther}} {
		lp := call("GET", "/login", tt.remote, nil, nil)
		offered := strings.Contains(lp.Body.String(), `id="login-tokenless"`)
		if offered != (tt.want == http.StatusSeeOther) {
			t.Errorf("%s: tokenless button offered %v", tt.remote, offered)
		}
		cookies := lp.Result().Cookies()
		csrf := csrfField.FindStringSubmatch(lp.Body.String())[1]
		w := call("POST", "/login", tt.remote, url.Values{"csrf": {csrf}, "tokenless": {"1"}}, cookies)
		if w.Code != tt.want {
			t.Errorf("tokenless login from %s: %d, want %d", tt.remote, w.Code, tt.want)
		}
		if w.Code == http.StatusSeeOther {
			// The session is good only from loopback.
			sess := w.Result().Cookies()
			if p := call("GET", "/security", "10.9.9.9:1", nil, sess); p.Code != http.StatusSeeOther {
				t.Errorf("a tokenless session used from another machine: %d", p.Code)
			}
		}
	}
	_ = time.Second
}

func TestLanguage(t *testing.T) {
	f := newFixture(t, false)
	u := newUser(t, f.console)
	if p := u.get("/login", "Accept-Language", "zh-CN,zh;q=0.9,en;q=0.8"); !strings.Contains(p.body, `<html lang="zh-CN">`) || !strings.Contains(p.body, "登录") {
		t.Errorf("Accept-Language zh-CN did not give Chinese")
	}
	if p := u.get("/login", "Accept-Language", "en-GB,en;q=0.9"); !strings.Contains(p.body, `<html lang="en">`) {
		t.Errorf("Accept-Language en did not give English")
	}
	u.login("")
	u.get("/consents", "Accept-Language", "en")
	p := u.post("/lang", url.Values{"lang": {"zh-CN"}, "back": {"/consents"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/consents" {
		t.Fatalf("switch: %d %s", p.status, p.header.Get("Location"))
	}
	if p := u.get("/consents", "Accept-Language", "en"); !strings.Contains(p.body, "<h1>授权同意</h1>") {
		t.Errorf("the language cookie does not win over Accept-Language")
	}
	for _, back := range []string{"https://evil.example/", "//evil.example/x", "/consents?subject=x", `\\evil`} {
		u.get("/")
		if p := u.post("/lang", url.Values{"lang": {"en"}, "back": {back}}); p.header.Get("Location") != "/" {
			t.Errorf("back %q redirected to %q", back, p.header.Get("Location"))
		}
	}
	u.get("/")
	if p := u.post("/lang", url.Values{"lang": {"fr"}}); p.status != http.StatusBadRequest {
		t.Errorf("unknown language: %d", p.status)
	}
}
