package consentapi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

// guest runs a real consent service over HTTP on loopback.
type guest struct {
	url string
	svc *consentnode.Service
	srv *httptest.Server
}

func startGuest(tb testing.TB) *guest {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	db := sqldbtest.OpenSQLite(tb, true)
	mem := cache.NewMemory(cache.MemoryOptions{})
	tb.Cleanup(func() { mem.Close() })
	log := slog.New(slog.DiscardHandler)
	svc, err := nodetest.Consent(tb, cfg, nodetest.Options{DB: db, Cache: mem, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Mount(mux)
	srv := httptest.NewServer(web.Middleware{Service: "consent", Log: log, Metrics: web.NewMetrics(prometheus.NewRegistry())}.Wrap(mux))
	tb.Cleanup(func() { svc.Drain(); srv.Close(); svc.Close() })
	ctx := context.Background()
	if _, err := svc.Domain.CreatePurpose(ctx, consent.PurposeRequest{ID: "credit_risk_assessment", PolicyText: "v1", Actor: "test"}); err != nil {
		tb.Fatal(err)
	}
	return &guest{url: srv.URL, svc: svc, srv: srv}
}

func (g *guest) grantAndToken(tb testing.TB, subject string) (consentID, token string) {
	tb.Helper()
	ctx := context.Background()
	c, _, err := g.svc.Domain.Grant(ctx, consent.GrantRequest{Subject: subject, Purpose: "credit_risk_assessment", Party: "partner",
		Categories: []string{"telecom.usage"}, PolicyVersion: 1, Actor: "test",
		Evidence: consent.Evidence{Channel: "web", Collector: "test", CollectedAt: time.Now().Add(-time.Minute)}})
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := g.svc.Domain.IssueToken(ctx, c.ID, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return c.ID, tok.Token
}

func newVerifier(tb testing.TB, g *guest) (*consentapi.Verifier, context.CancelFunc) {
	tb.Helper()
	v := consentapi.NewVerifier(consentapi.VerifierOptions{GuestURL: g.url, Issuer: consent.Issuer("bank"), Audience: "partner"})
	ctx, cancel := context.WithCancel(context.Background())
	go v.Run(ctx)
	tb.Cleanup(cancel)
	deadline := time.Now().Add(5 * time.Second)
	for !v.Streaming() {
		if time.Now().After(deadline) {
			tb.Fatal("revocation stream never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v, cancel
}

func TestWithdrawalReachesTheHost(t *testing.T) {
	g := startGuest(t)
	v, _ := newVerifier(t, g)
	id, token := g.grantAndToken(t, "host-1")
	ctx := context.Background()
	for i := 0; i < 3; i++ { // the first asks the guest, the rest hit the cache
		if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	if _, err := v.Verify(ctx, token, "marketing"); !errors.Is(err, consent.ErrTokenRejected) {
		t.Errorf("wrong purpose accepted: %v", err)
	}
	if _, err := g.svc.Domain.Withdraw(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, err := v.Verify(ctx, token, "credit_risk_assessment")
		var te *consent.TokenError
		if errors.As(err, &te) && te.Code == "revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still accepted 1 s after withdrawal: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStreamDownMeansNoCache(t *testing.T) {
	g := startGuest(t)
	v, stop := newVerifier(t, g)
	id, token := g.grantAndToken(t, "host-2")
	ctx := context.Background()
	if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
		t.Fatal(err)
	}
	stop() // the host loses the stream ...
	for v.Streaming() {
		time.Sleep(time.Millisecond)
	}
	// ... and withdrawal is still seen, through introspection.
	if _, err := g.svc.Domain.Withdraw(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, token, "credit_risk_assessment"); !errors.Is(err, consent.ErrTokenRejected) {
		t.Errorf("withdrawn token accepted with the stream down: %v", err)
	}
	// With the guest gone, verification fails closed.
	g.srv.CloseClientConnections()
	g.srv.Close()
	if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err == nil {
		t.Error("verified with the guest unreachable")
	}
}

func TestParseJWKSSkipsWeakKeys(t *testing.T) {
	in := `{"keys":[{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"},{"kty":"EC","kid":"ec"},{"kty":"RSA","kid":"hs","alg":"HS256","n":"` + strings.Repeat("A", 400) + `","e":"AQAB"}]}`
	keys, err := consentapi.ParseJWKS(strings.NewReader(in))
	if err != nil || len(keys) != 0 {
		t.Errorf("got %v %v", keys, err)
	}
	if _, err := consentapi.ParseJWKS(strings.NewReader("{")); err == nil {
		t.Error("truncated JWKS accepted")
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := consentapi.ParseJWKS(bytes.NewReader(data))
		if err != nil {
			return
		}
		for kid, k := range keys {
			if k.N.BitLen() < 2041 || k.E < 3 {
				t.Fatalf("weak key %s accepted", kid)
			}
		}
	})
}

// BenchmarkWithdrawalToRejection measures how long after a withdrawal at
// the guest a host's verifier refuses the token (reported as ms/op).
func BenchmarkWithdrawalToRejection(b *testing.B) {
	g := startGuest(b)
	v, _ := newVerifier(b, g)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id, token := g.grantAndToken(b, "bench-"+time.Now().Format(time.RFC3339Nano))
		if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := g.svc.Domain.Withdraw(ctx, id, "bench"); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
				break
			}
		}
	}
}

// BenchmarkHostVerifyCached is a host verifying a token it has seen.
func BenchmarkHostVerifyCached(b *testing.B) {
	g := startGuest(b)
	v, _ := newVerifier(b, g)
	_, token := g.grantAndToken(b, "bench-cached")
	ctx := context.Background()
	if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token, "credit_risk_assessment"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPolicyRenewalPurgesHostCache: a new policy version that asks for
// renewal stops a host's cached verifications of older tokens.
func TestPolicyRenewalPurgesHostCache(t *testing.T) {
	g := startGuest(t)
	ctx := context.Background()
	if _, err := g.svc.Domain.CreatePurpose(ctx, consent.PurposeRequest{ID: "renewing", PolicyText: "v1", RenewOnNewPolicy: true, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	v, _ := newVerifier(t, g)
	req := consent.GrantRequest{Subject: "renew-host", Purpose: "renewing", Party: "partner", Categories: []string{"telecom.usage"}, PolicyVersion: 1, Actor: "test",
		Evidence: consent.Evidence{Channel: "web", Collector: "test", CollectedAt: time.Now().Add(-time.Minute)}}
	c, _, err := g.svc.Domain.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := g.svc.Domain.IssueToken(ctx, c.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok.Token, "renewing"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.svc.Domain.PublishPolicy(ctx, "renewing", "v2", "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		if _, err := v.Verify(ctx, tok.Token, "renewing"); errors.Is(err, consent.ErrTokenRejected) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token under the old policy still accepted 1 s after a renewal-requiring policy")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
