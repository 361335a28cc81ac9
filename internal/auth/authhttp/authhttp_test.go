package authhttp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
)

type tokens map[string]auth.Principal

func (t tokens) Authenticate(_ context.Context, secret string) (auth.Principal, error) {
	if secret == "db-down" {
		return auth.Principal{}, errors.New("connection refused")
	}
	p, ok := t[secret]
	if !ok {
		return auth.Principal{}, auth.ErrUnknownToken
	}
	return p, nil
}

type countingAuditor struct{ n int }

func (c *countingAuditor) Append(context.Context, audit.Event) (audit.Entry, error) {
	c.n++
	return audit.Entry{}, nil
}

func TestGuard(t *testing.T) {
	aud := &countingAuditor{}
	analyst := auth.Principal{Kind: "token", Name: "ana", Roles: []auth.Role{auth.RoleAnalyst}}
	g := authhttp.Guard{Tokens: tokens{"ana": analyst}, AuthRequired: true, Auditor: aud,
		PeerParty: func(*tls.ConnectionState) string { return "partner" }}
	h := g.With([]auth.Role{auth.RoleAnalyst, auth.RolePartner}, func(w http.ResponseWriter, r *http.Request) error {
		w.Write([]byte(authhttp.PrincipalOf(r.Context()).Actor()))
		return nil
	})
	tests := []struct {
		name, auth, remote string
		tls                bool
		status             int
		body               string
	}{
		{"no token", "", "10.0.0.1:1", false, 401, ""},
		{"token", "Bearer ana", "10.0.0.1:1", false, 200, "token:ana"},
		{"unknown token", "Bearer nope", "10.0.0.1:1", false, 401, ""},
		{"not bearer", "Basic x", "10.0.0.1:1", false, 401, ""},
		{"database down", "Bearer db-down", "10.0.0.1:1", false, 503, ""},
		{"peer certificate", "", "10.0.0.1:1", true, 200, "peer:partner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			r.RemoteAddr = tt.remote
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			h(w, r)
			if w.Code != tt.status || (tt.body != "" && w.Body.String() != tt.body) {
				t.Errorf("%d %s, want %d %s", w.Code, w.Body, tt.status, tt.body)
			}
		})
	}
	if aud.n != 1 {
		t.Errorf("refused tokens audited %d times, want 1 (the unknown one)", aud.n)
	}
	open := authhttp.Guard{}
	ok := open.With([]auth.Role{auth.RoleAdmin}, func(w http.ResponseWriter, r *http.Request) error { return nil })
	for remote, want := range map[string]int{"127.0.0.1:5": 200, "[::1]:5": 200, "192.168.1.2:5": 403} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		ok(w, r)
		if w.Code != want {
			t.Errorf("%s without auth: %d, want %d", remote, w.Code, want)
		}
	}
}
