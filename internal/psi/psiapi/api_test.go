package psiapi_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

// newAPI serves the real job service and session manager on a SQLite
// database behind the node's middleware.
func newAPI(t *testing.T, authRequired, plainPeers bool) (http.Handler, *auth.Tokens) {
	t.Helper()
	db := sqldbtest.OpenSQLite(t, true)
	root := make([]byte, 32)
	rand.Read(root)
	km, err := keys.New(context.Background(), sqlkeys.New(db), root, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := sqlpsi.New(db)
	inputs := psijob.Inputs{Tables: sqlpsi.NewTables(db), Reserved: sqlpsi.Reserved()}
	allowed := func(p string) bool { return p == "partner" }
	sessions := psijob.NewSessions(psijob.SessionsDeps{Store: store, Inputs: inputs, Sealer: km, Allowed: allowed}, psijob.Options{})
	jobs := psijob.NewService(psijob.ServiceDeps{Store: store, Inputs: inputs, Sessions: sessions, Sealer: km, Peers: map[string]string{"partner": "https://partner.example"}}, psijob.Options{})
	tokens := auth.NewTokens(sqlauth.New(db))
	allow, err := pki.NewAllowlist("partner")
	if err != nil {
		t.Fatal(err)
	}
	api := psiapi.New(jobs, sessions, tokens, psiapi.Options{AuthRequired: authRequired, Peers: authhttp.Peers{Allowlist: allow, PlainLoopback: plainPeers}})
	mux := http.NewServeMux()
	api.Mount(mux)
	log := slog.New(slog.DiscardHandler)
	return web.Middleware{Service: "psi", Log: log, Metrics: web.NewMetrics(prometheus.NewRegistry()), MaxBodyBytes: 1 << 20}.Wrap(mux), tokens
}

func call(h http.Handler, method, path, remote, body string, hdr ...string) (int, string) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = remote
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var e web.ErrorBody
	json.Unmarshal(w.Body.Bytes(), &e)
	return w.Code, e.Error.Code
}

const loop, remote = "127.0.0.1:5555", "203.0.113.9:5555"

func TestClientAPIAuth(t *testing.T) {
	t.Run("loopback only without AUTH_REQUIRED", func(t *testing.T) {
		h, _ := newAPI(t, false, true)
		if st, code := call(h, "GET", "/psi/v1/jobs", loop, ""); st != 200 {
			t.Errorf("loopback: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs", remote, ""); st != 403 || code != "loopback_only" {
			t.Errorf("remote: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs/nope", loop, ""); st != 404 || code != "not_found" {
			t.Errorf("malformed id: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/jobs", loop, `{"peer":"partner","input":{"kind":"csv","path":"/nonexistent.csv","column":"id"}}`); st != 400 || code != "invalid_field" {
			t.Errorf("missing file: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/jobs", loop, `{"peer":"partner","inputs":{}}`); st != 400 || code != "unknown_field" {
			t.Errorf("unknown field: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs?status=weird", loop, ""); st != 400 || code != "invalid_query" {
			t.Errorf("bad filter: %d %s", st, code)
		}
	})
	t.Run("bearer tokens with roles", func(t *testing.T) {
		h, tokens := newAPI(t, true, false)
		ctx := context.Background()
		analyst, _, _ := tokens.Create(ctx, "a", auth.RoleAnalyst)
		operator, _, _ := tokens.Create(ctx, "o", auth.RoleOperator)
		if st, code := call(h, "GET", "/psi/v1/jobs", loop, ""); st != 401 || code != "unauthorized" {
			t.Errorf("no token with AUTH_REQUIRED: %d %s", st, code)
		}
		if st, _ := call(h, "GET", "/psi/v1/jobs", remote, "", "Authorization", "Bearer "+analyst); st != 200 {
			t.Errorf("analyst lists: %d", st)
		}
		if st, code := call(h, "POST", "/psi/v1/jobs", remote, `{}`, "Authorization", "Bearer "+analyst); st != 403 || code != "forbidden" {
			t.Errorf("analyst creates: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs/psi_00000000000000000000/result.csv", remote, "", "Authorization", "Bearer "+analyst); st != 403 {
			t.Errorf("analyst exports identifiers: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs/psi_00000000000000000000/result.csv", remote, "", "Authorization", "Bearer "+operator); st != 404 {
			t.Errorf("operator, unknown job: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/jobs", remote, "", "Authorization", "Bearer frk_wrong"); st != 401 {
			t.Errorf("unknown token: %d %s", st, code)
		}
	})
}

func TestPeerAPIWithoutTLS(t *testing.T) {
	open := `{"version":1,"mode":"intersection","guest_count":1,"batch_size":8,"normalization":"x"}`
	t.Run("plain peers", func(t *testing.T) {
		h, _ := newAPI(t, false, true)
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", loop, open); st != 403 || code != "peer_not_allowed" {
			t.Errorf("no party header: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", loop, open, authhttp.PartyHeader, "mallory"); st != 403 || code != "peer_not_allowed" {
			t.Errorf("unregistered party: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", remote, open, authhttp.PartyHeader, "partner"); st != 403 || code != "peer_not_allowed" {
			t.Errorf("not loopback: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", loop, open, authhttp.PartyHeader, "partner"); st != 409 || code != "no_host_job" {
			t.Errorf("registered party without a host job: %d %s", st, code)
		}
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", loop, `{"version":1}`, authhttp.PartyHeader, "partner"); st != 400 || code != "protocol_error" {
			t.Errorf("bad handshake: %d %s", st, code)
		}
		if st, code := call(h, "GET", "/psi/v1/peer/sessions/xyz/host/0", loop, "", authhttp.PartyHeader, "partner"); st != 404 || code != "session_not_found" {
			t.Errorf("malformed session: %d %s", st, code)
		}
	})
	t.Run("AUTH_REQUIRED without TLS refuses peers", func(t *testing.T) {
		h, _ := newAPI(t, true, false)
		if st, code := call(h, "POST", "/psi/v1/peer/sessions", loop, open, authhttp.PartyHeader, "partner"); st != 403 || code != "peer_not_allowed" {
			t.Errorf("%d %s", st, code)
		}
	})
}
