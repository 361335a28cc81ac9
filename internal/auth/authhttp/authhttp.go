// Package authhttp is the HTTP side of internal/auth that every service's
// API shares: who is calling, and may they.
//
// It finds the principal of a request — a peer party by its verified mutual-
// TLS certificate, a bearer-token holder, or, only while AUTH_REQUIRED is
// false, a caller on the loopback interface — and guards handlers by role,
// answering 401, 403 or 503 as JSON errors.
package authhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Authenticator resolves bearer tokens (auth.Tokens).
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (auth.Principal, error)
}

// Auditor records refused credentials; pass a sampled one so a flood of
// bad tokens cannot stall the audit chain.
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Guard authenticates requests and checks roles.
type Guard struct {
	Tokens       Authenticator // nil: bearer tokens are refused
	AuthRequired bool
	// PeerParty names the registered party of a verified client
	// certificate ("" for none); nil when the API has no peer callers.
	PeerParty func(cs *tls.ConnectionState) string
	Auditor   Auditor // optional
	Log       *slog.Logger
	// MapError turns a handler's domain errors into *web.Error values.
	MapError func(error) error
}

type principalKey struct{}

// PrincipalOf returns the principal With stored in ctx.
func PrincipalOf(ctx context.Context) auth.Principal {
	p, _ := ctx.Value(principalKey{}).(auth.Principal)
	return p
}

// With authenticates the caller, checks it holds one of roles, and runs h,
// writing h's error as a JSON error.
func (g Guard) With(roles []auth.Role, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := g.Principal(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fedrisk"`)
			web.WriteError(w, r, g.log(), err)
			return
		}
		if !p.Has(roles...) {
			web.WriteError(w, r, g.log(), web.Errorf(http.StatusForbidden, "forbidden", "%s may not do this (needs role %s)", p.Actor(), roles[0]))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if err := h(w, r); err != nil {
			if g.MapError != nil {
				err = g.MapError(err)
			}
			web.WriteError(w, r, g.log(), err)
		}
	}
}

// Principal finds who is calling.
func (g Guard) Principal(r *http.Request) (auth.Principal, error) {
	if g.PeerParty != nil && r.TLS != nil && r.Header.Get("Authorization") == "" {
		if party := g.PeerParty(r.TLS); party != "" {
			return auth.Peer(party), nil
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || g.Tokens == nil {
			return auth.Principal{}, web.Errorf(http.StatusUnauthorized, "unauthorized", "Authorization must be a bearer token")
		}
		p, err := g.Tokens.Authenticate(r.Context(), strings.TrimSpace(secret))
		switch {
		case errors.Is(err, auth.ErrUnknownToken), errors.Is(err, auth.ErrNoToken):
			g.audit(r, audit.Event{Actor: "anonymous", Action: "auth.failed", Details: map[string]string{"reason": "unknown or revoked bearer token", "route": r.Pattern}})
			return auth.Principal{}, web.Errorf(http.StatusUnauthorized, "unauthorized", "unknown or revoked bearer token")
		case err != nil:
			return auth.Principal{}, &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "credentials cannot be checked right now", Cause: err}
		}
		return p, nil
	}
	if g.AuthRequired {
		return auth.Principal{}, web.Errorf(http.StatusUnauthorized, "unauthorized", "a bearer token is required (AUTH_REQUIRED=true)")
	}
	if !IsLoopback(r.RemoteAddr) {
		return auth.Principal{}, web.Errorf(http.StatusForbidden, "loopback_only", "with AUTH_REQUIRED=false this API answers loopback callers only")
	}
	return auth.Local(), nil
}

func (g Guard) audit(r *http.Request, ev audit.Event) {
	if g.Auditor == nil {
		return
	}
	if _, err := g.Auditor.Append(r.Context(), ev); err != nil {
		g.log().WarnContext(r.Context(), "audit of a refused credential failed", "err", err)
	}
}

func (g Guard) log() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

// IsLoopback reports whether a RemoteAddr is on the loopback interface.
func IsLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
