package consoleapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
)

// runNode starts a node in the background and stops it at the end of the
// test.
func runNode(t *testing.T, cfg config.Config, log *slog.Logger) *node.Node {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Logger: log, Registry: prometheus.NewRegistry(), Build: "test"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("node %s: %v", cfg.Party, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("node %s did not stop", cfg.Party)
		}
	})
	return n
}

// servicesConfig is a party's consent, PSI and serving services on free
// loopback ports, plain HTTP.
func servicesConfig(t *testing.T, party, role string, authRequired bool) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir, cfg.AuthRequired = party, role, t.TempDir(), authRequired
	cfg.Services = config.AllServices()
	for _, s := range config.AllServices() {
		cfg.Addrs[s] = "127.0.0.1:0"
	}
	cfg.HTTP.ShutdownGrace = 5 * time.Second
	cfg.LogLevel = "debug"
	return cfg
}

// consoleConfig is a console-only node calling the services of svc.
func consoleConfig(t *testing.T, svc config.Config, n *node.Node) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir, cfg.AuthRequired = svc.Party, svc.Role, t.TempDir(), svc.AuthRequired
	cfg.Services = []string{config.ServiceConsole}
	cfg.Addrs[config.ServiceConsole] = "127.0.0.1:0"
	scheme := "http://"
	if svc.TLS.Enabled() {
		scheme = "https://"
	}
	cfg.Console.ConsentURL = scheme + n.Addr(config.ServiceConsent)
	cfg.Console.PSIURL = scheme + n.Addr(config.ServicePSI)
	cfg.Console.ServingURL = scheme + n.Addr(config.ServiceServing)
	cfg.HTTP.ShutdownGrace = 5 * time.Second
	return cfg
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// user is a browser-like HTTP client: a cookie jar, no redirects
// followed, the console's forms posted with their CSRF token.
type user struct {
	t    *testing.T
	base string
	c    *http.Client
	last string // the last page's HTML
}

func newUser(t *testing.T, base string) *user {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &user{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	body   string
	header http.Header
}

func (u *user) do(req *http.Request) page {
	u.t.Helper()
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		u.last = string(b)
	}
	return page{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (u *user) get(path string, hdr ...string) page {
	u.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return u.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the last page.
func (u *user) csrf() string {
	m := csrfField.FindStringSubmatch(u.last)
	if m == nil {
		u.t.Fatalf("no CSRF token on the last page")
	}
	return m[1]
}

// post submits a form; the CSRF token of the last page is added unless
// the form has one.
func (u *user) post(path string, form url.Values, hdr ...string) page {
	u.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", u.csrf())
	}
	req, _ := http.NewRequest(http.MethodPost, u.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return u.do(req)
}

// login logs in with token ("" for the tokenless button).
func (u *user) login(token string) page {
	u.t.Helper()
	u.get("/login")
	f := url.Values{"token": {token}}
	if token == "" {
		f.Set("tokenless", "1")
	}
	return u.post("/login", f)
}
