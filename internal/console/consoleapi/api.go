// Package consoleapi is the HTTP side of the web console: server-rendered
// pages (html/template) with embedded style sheet and one small script,
// login with an API token, sessions, CSRF protection and a strict
// Content-Security-Policy.
//
// The console owns nothing. Every page calls the services' client APIs —
// consent, PSI, model-serving (registry, training, budgets) — exactly as the
// command line does, with the logged-in user's bearer token (and the node's
// client certificate when the services ask for mutual TLS). The token's
// roles, which the consent service's whoami route reports at login, decide
// what the pages offer; the services enforce them again on every call.
//
// Security:
//   - A session cookie (HttpOnly, SameSite=Strict, Secure and __Host- over
//     TLS) holds a random id; the token never reaches the browser again.
//   - Every POST needs the session's CSRF token and passes
//     http.CrossOriginProtection; GET changes nothing.
//   - Content-Security-Policy: default-src 'none'; scripts and styles only
//     from the console itself, no inline script or style.
//   - Subject identifiers travel only in POST bodies (lookups, grants,
//     scores), never in URLs, and are never logged; neither are tokens.
//   - With AUTH_REQUIRED=false a loopback browser may enter without a token
//     (as the APIs let loopback callers in); anyone else needs one.
package consoleapi

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/console"
)

//go:embed static templates
var assets embed.FS

// Options configure the console.
type Options struct {
	// Party and Role name this node (shown in the header; Role picks what
	// the scoring and budgets pages offer: guests score, hosts keep budgets).
	Party, Role string
	// Base URLs of the services the console calls.
	ConsentURL, PSIURL, ServingURL string
	// PrometheusURL, if set, is asked for the alerts firing.
	PrometheusURL string
	// HTTP calls the services (its transport holds the TLS configuration:
	// the CA of the services' certificates, the node's client certificate).
	HTTP *http.Client
	// PrometheusHTTP calls Prometheus (default: HTTP).
	PrometheusHTTP *http.Client
	// AuthRequired is AUTH_REQUIRED: false lets loopback browsers in
	// without a token.
	AuthRequired bool
	// DefaultModel is the model the scoring playground offers first.
	DefaultModel string
	// SessionIdle and SessionMax end sessions (defaults 30 min and 12 h).
	SessionIdle, SessionMax time.Duration
	Log                     *slog.Logger
	Now                     func() time.Time
}

// API serves the console.
type API struct {
	opts     Options
	cats     *console.Catalogs
	pages    *pages
	sessions *sessions
	cop      *http.CrossOriginProtection
	static   http.Handler
	version  string // of the assets, for cache busting
	log      *slog.Logger
}

// New returns the console.
func New(opts Options) (*API, error) {
	if opts.ConsentURL == "" || opts.PSIURL == "" || opts.ServingURL == "" {
		return nil, errors.New("console: the consent, psi and serving URLs are required")
	}
	for _, u := range []string{opts.ConsentURL, opts.PSIURL, opts.ServingURL, opts.PrometheusURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("console: %q is not an http(s) URL", u)
		}
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.PrometheusHTTP == nil {
		opts.PrometheusHTTP = opts.HTTP
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 30 * time.Minute
	}
	if opts.SessionMax <= 0 {
		opts.SessionMax = 12 * time.Hour
	}
	if opts.DefaultModel == "" {
		opts.DefaultModel = "credit-risk"
	}
	cats := console.NewCatalogs()
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_ = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(static, path)
			h.Write(b)
		}
		return nil
	})
	return &API{
		opts: opts, cats: cats, pages: p,
		sessions: newSessions(opts.SessionIdle, opts.SessionMax, 10000, opts.Now),
		cop:      http.NewCrossOriginProtection(),
		static:   http.StripPrefix("/static/", http.FileServerFS(static)),
		version:  hex.EncodeToString(h.Sum(nil))[:12],
		log:      opts.Log.With("component", "console"),
	}, nil
}

// Close ends every session and closes the idle connections to the
// services (so their graceful shutdown need not wait for them).
func (a *API) Close() error {
	a.sessions.mu.Lock()
	clear(a.sessions.m)
	a.sessions.mu.Unlock()
	a.opts.HTTP.CloseIdleConnections()
	a.opts.PrometheusHTTP.CloseIdleConnections()
	return nil
}

// Roles of the console's actions (the services check them again).
const (
	roleRead    = "analyst"
	roleOperate = "operator"
	roleAdmin   = "admin"
)

// Mount adds the console's routes to mux. The node adds /health, /ready
// and /metrics beside them.
func (a *API) Mount(mux *http.ServeMux) {
	mux.Handle("GET /static/", a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		a.static.ServeHTTP(w, r)
	})))
	mux.Handle("GET /favicon.ico", a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.Handle("GET /login", a.secure(http.HandlerFunc(a.loginPage)))
	mux.Handle("POST /login", a.secure(http.HandlerFunc(a.login)))
	mux.Handle("POST /logout", a.secure(http.HandlerFunc(a.logout)))
	mux.Handle("POST /lang", a.secure(http.HandlerFunc(a.switchLang)))

	a.page(mux, "GET /{$}", "", a.overview)
	a.page(mux, "GET /consents", roleRead, a.consents)
	a.page(mux, "POST /consents/lookup", roleRead, a.lookup)
	a.page(mux, "POST /consents/grant", roleOperate, a.grant)
	a.page(mux, "POST /consents/withdraw", roleOperate, a.withdraw)
	a.page(mux, "GET /consents/{id}", roleRead, a.consentDetail)
	a.page(mux, "GET /psi", roleRead, a.psiJobs)
	a.page(mux, "GET /psi/live", roleRead, a.psiJobsLive)
	a.page(mux, "GET /psi/{id}", roleRead, a.psiJob)
	a.page(mux, "GET /psi/{id}/live", roleRead, a.psiJobLive)
	a.page(mux, "POST /psi/{id}/export", roleOperate, a.psiExport)
	a.page(mux, "GET /training", roleRead, a.trainingJobs)
	a.page(mux, "GET /training/{id}", roleRead, a.trainingJob)
	a.page(mux, "GET /training/{id}/live", roleRead, a.trainingJobLive)
	a.page(mux, "GET /models", roleRead, a.models)
	a.page(mux, "GET /models/{id}", roleRead, a.model)
	a.page(mux, "GET /models/{id}/versions/{version}", roleRead, a.modelVersion)
	a.page(mux, "POST /models/{id}/promote", roleOperate, a.promote)
	a.page(mux, "POST /models/{id}/rollback", roleOperate, a.rollback)
	a.page(mux, "GET /scoring", roleOperate, a.scoringPage)
	a.page(mux, "POST /scoring", roleOperate, a.score)
	a.page(mux, "GET /budgets", roleRead, a.budgets)
	a.page(mux, "GET /audit", roleRead, a.audit)
	a.page(mux, "GET /security", "", a.security)
	mux.Handle("/", a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.renderError(w, r, nil, http.StatusNotFound, a.catalog(r).T("error.not_found"))
	})))
}

// csp allows nothing but the console's own style sheet, script and
// same-origin fetches of live fragments; forms post only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the security headers every console answer carries.
func (a *API) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if secureRequest(r) {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// req is what a page handler gets: the session, its language and clients
// of the services acting with the session's token.
type req struct {
	sess *session
	id   string // session id (for logout)
	cat  *console.Catalog
	api  *backend
}

// errRedirect is returned by handlers that answered with a redirect.
var errHandled = errors.New("handled")

// page registers a page that needs a session whose user holds role ("":
// any logged-in user). POSTs must carry the session's CSRF token.
func (a *API) page(mux *http.ServeMux, pattern, role string, h func(http.ResponseWriter, *http.Request, *req) error) {
	mux.Handle(pattern, a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := a.readCookie(r, sessionCookie)
		sess := a.sessions.get(id)
		if sess != nil && sess.user.Kind == "local" && (a.opts.AuthRequired || !authhttp.IsLoopback(r.RemoteAddr)) {
			sess = nil // a tokenless session is good only from loopback, while auth is off
		}
		if sess == nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/live") {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			a.renderError(w, r, nil, http.StatusUnauthorized, a.catalog(r).T("error.session"))
			return
		}
		rq := &req{sess: sess, id: id, cat: a.catalog(r), api: a.backend(sess.token)}
		if r.Method == http.MethodPost {
			if err := a.checkPost(r, sess.csrf); err != nil {
				a.log.WarnContext(r.Context(), "console: POST refused", "route", r.Pattern, "reason", err.Error())
				a.renderError(w, r, rq, http.StatusForbidden, rq.cat.T("error.csrf"))
				return
			}
		}
		if role != "" && !sess.user.Has(role) {
			a.renderError(w, r, rq, http.StatusForbidden, rq.cat.F("error.role", role))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		defer cancel()
		if err := h(w, r.WithContext(ctx), rq); err != nil && !errors.Is(err, errHandled) {
			a.fail(w, r, rq, id, err)
		}
	})))
}

// checkPost refuses cross-origin POSTs and POSTs without the CSRF token.
func (a *API) checkPost(r *http.Request, want string) error {
	if err := a.cop.Check(r); err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return errors.New("unreadable form")
	}
	if !sameToken(r.PostForm.Get("csrf"), want) {
		return errors.New("missing or wrong CSRF token")
	}
	return nil
}

// fail answers a handler's error: an expired or revoked token ends the
// session; the services' own refusals are shown with their message.
func (a *API) fail(w http.ResponseWriter, r *http.Request, rq *req, id string, err error) {
	var ae *apiclient.Error
	var ce *consoleError
	switch {
	case errors.As(err, &ce):
		a.renderError(w, r, rq, ce.status, ce.msg)
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		a.sessions.drop(id)
		a.renderError(w, r, nil, http.StatusUnauthorized, rq.cat.T("error.token_rejected"))
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		a.renderError(w, r, rq, http.StatusForbidden, rq.cat.F("error.service_forbidden", ae.Message))
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		a.renderError(w, r, rq, http.StatusNotFound, rq.cat.T("error.not_found"))
	case errors.As(err, &ae) && ae.Status < 500:
		a.renderError(w, r, rq, http.StatusBadRequest, rq.cat.F("error.service_refused", ae.Code, ae.Message))
	case errors.Is(err, context.DeadlineExceeded):
		a.log.WarnContext(r.Context(), "console: a service did not answer in time", "route", r.Pattern, "err", err)
		a.renderError(w, r, rq, http.StatusGatewayTimeout, rq.cat.T("error.timeout"))
	default:
		a.log.WarnContext(r.Context(), "console: page failed", "route", r.Pattern, "err", err)
		a.renderError(w, r, rq, http.StatusBadGateway, rq.cat.T("error.unavailable"))
	}
}

// consoleError is an error a page shows as it is, with a status.
type consoleError struct {
	status int
	msg    string
}

func (e *consoleError) Error() string { return e.msg }

// catalog picks the language: the console's cookie, else Accept-Language.
func (a *API) catalog(r *http.Request) *console.Catalog {
	if l, ok := console.ParseLang(a.readCookie(r, langCookie)); ok {
		return a.cats.For(l)
	}
	return a.cats.For(console.Negotiate(r.Header.Get("Accept-Language")))
}

// switchLang sets the language cookie and returns to the page it came from.
func (a *API) switchLang(w http.ResponseWriter, r *http.Request) {
	want := a.readCookie(r, loginCookie)
	if sess := a.sessions.get(a.readCookie(r, sessionCookie)); sess != nil {
		want = sess.csrf
	}
	if err := a.checkPost(r, want); err != nil {
		a.renderError(w, r, nil, http.StatusForbidden, a.catalog(r).T("error.csrf"))
		return
	}
	l, ok := console.ParseLang(r.PostForm.Get("lang"))
	if !ok {
		a.renderError(w, r, nil, http.StatusBadRequest, a.catalog(r).T("error.bad_input"))
		return
	}
	a.setCookie(w, r, langCookie, string(l), 365*24*3600)
	http.Redirect(w, r, localPath(r.PostForm.Get("back")), http.StatusSeeOther)
}

// localPath returns p if it is a plain path of the console (letters,
// digits, '/', '_', '-', '.'; no query, no escapes, not "//..."), else "/".
func localPath(p string) string {
	if p == "" || p[0] != '/' || len(p) > 512 || strings.Contains(p, "//") {
		return "/"
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '.') {
			return "/"
		}
	}
	return p
}
