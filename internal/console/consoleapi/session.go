package consoleapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Cookie names, followed by "_" and the party (browsers keep cookies per
// host, not per port: a bank's and a partner's console on one machine must
// not share them); behind TLS they get the __Host- prefix, which browsers
// accept only with Secure, Path=/ and no Domain.
const (
	sessionCookie = "fedrisk_console"
	loginCookie   = "fedrisk_console_login"
	langCookie    = "fedrisk_console_lang"
)

// user is who a session acts as.
type user struct {
	Kind  string // token or local
	Name  string
	Roles []string
}

// Has reports whether the user holds role.
func (u user) Has(role string) bool { return slices.Contains(u.Roles, role) }

// RolesText lists the roles for the header.
func (u user) RolesText() string { return strings.Join(u.Roles, ", ") }

// session is one logged-in browser. The API token stays on the server:
// the browser holds only a random session id.
type session struct {
	token   string // bearer token for the services ("" for a local session)
	user    user
	csrf    string
	created time.Time
	seen    time.Time
	flash   *flash
}

// flash is a one-time message shown on the next page.
type flash struct {
	Kind string // ok or error
	Text string
}

// sessions keeps sessions in memory, keyed by the SHA-256 of their id.
// Several console replicas need session affinity at the load balancer (or
// users log in again on another replica).
type sessions struct {
	mu    sync.Mutex
	m     map[[32]byte]*session
	idle  time.Duration
	max   time.Duration
	limit int
	now   func() time.Time
}

func newSessions(idle, max time.Duration, limit int, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, idle: idle, max: max, limit: limit, now: now}
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create stores a new session and returns its id.
func (s *sessions) create(token string, u user) (string, *session) {
	id := randomToken()
	now := s.now()
	sess := &session{token: token, user: u, csrf: randomToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.m) >= s.limit { // drop the least recently seen
		var oldest [32]byte
		first := true
		for k, v := range s.m {
			if first || v.seen.Before(s.m[oldest].seen) {
				oldest, first = k, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// get returns the live session of id and marks it seen.
func (s *sessions) get(id string) *session {
	if id == "" || len(id) > 128 {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[k]
	if !ok {
		return nil
	}
	if now.Sub(sess.seen) > s.idle || now.Sub(sess.created) > s.max {
		delete(s.m, k)
		return nil
	}
	sess.seen = now
	return sess
}

// drop ends the session of id.
func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// setFlash and takeFlash pass a message to the next page.
func (s *sessions) setFlash(sess *session, kind, text string) {
	s.mu.Lock()
	sess.flash = &flash{Kind: kind, Text: text}
	s.mu.Unlock()
}

func (s *sessions) takeFlash(sess *session) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = nil
	return f
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, v := range s.m {
		if now.Sub(v.seen) > s.idle || now.Sub(v.created) > s.max {
			delete(s.m, k)
		}
	}
}

// secureRequest reports whether the browser reached the console over TLS:
// directly, or through a proxy that terminated it (X-Forwarded-Proto). A
// forged header only makes the cookies stricter.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *API) cookieName(r *http.Request, base string) string {
	name := base
	if a.opts.Party != "" {
		name += "_" + a.opts.Party
	}
	if secureRequest(r) {
		return "__Host-" + name
	}
	return name
}

func (a *API) readCookie(r *http.Request, base string) string {
	c, err := r.Cookie(a.cookieName(r, base))
	if err != nil {
		return ""
	}
	return c.Value
}

// setCookie sets an HttpOnly, SameSite=Strict cookie, Secure over TLS;
// maxAge 0 makes a session cookie, < 0 deletes it.
func (a *API) setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: a.cookieName(r, base), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteStrictMode,
	})
}

// sameToken compares two CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
