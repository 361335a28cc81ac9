package consentnode_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/cache/cachetest"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// replicasBehindProxy starts two consent replicas on one database whose
// Redis (FEDRISK_TEST_REDIS_URL) sits behind a fault-injecting proxy.
func replicasBehindProxy(t *testing.T) (a, b *consentnode.Service, proxy *cachetest.FaultProxy) {
	t.Helper()
	redisURL := os.Getenv("FEDRISK_TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("FEDRISK_TEST_REDIS_URL not set: the Redis outage tests need a real Redis")
	}
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy = cachetest.NewFaultProxy(t, u.Host)
	u.Host = proxy.Addr()
	prefix := fmt.Sprintf("fedrisk-outage-%d", time.Now().UnixNano())
	backends := sqldbtest.Backends(t)
	db := backends[len(backends)-1].Open(t, true) // PostgreSQL when available
	replica := func() *consentnode.Service {
		rc, err := cache.NewRedis(context.Background(), u.String(), cache.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.EncryptionKey = "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c="
		svc, err := nodetest.Consent(t, cfg, nodetest.Options{DB: db, Cache: rc})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	a, b = replica(), replica()
	if _, err := a.Domain.CreatePurpose(context.Background(), consent.PurposeRequest{ID: "credit_risk_assessment", PolicyText: "v1", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	return a, b, proxy
}

// TestWithdrawalWinsOverARedisOutage (issue 12, finding 1): a withdrawal
// made while Redis is unreachable could not write its denial, and the
// cached "active" verification answered again once Redis came back, for up
// to 15 minutes. Now the replica that withdrew refuses at once, and every
// other replica as soon as it has read the withdrawal from the revocation
// log, whatever Redis holds.
func TestWithdrawalWinsOverARedisOutage(t *testing.T) {
	a, b, proxy := replicasBehindProxy(t)
	ctx := context.Background()
	c, _, err := a.Domain.Grant(ctx, grantReq("outage-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Domain.IssueToken(ctx, c.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := consent.Expect{Audience: "partner", Purpose: "credit_risk_assessment"}
	for _, r := range []*consentnode.Service{a, b} { // both verify: "active" is now cached in Redis
		if _, err := r.Domain.Verify(ctx, tok.Token, want, "test"); err != nil {
			t.Fatal(err)
		}
	}

	proxy.Cut()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Domain.Withdraw(wctx, c.ID, "test"); err != nil {
		t.Fatalf("withdraw during the outage: %v", err)
	}
	head, err := a.Audit.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Heal()

	refused := func(r *consentnode.Service) {
		t.Helper()
		for range 3 {
			_, err := r.Domain.Verify(ctx, tok.Token, want, "test")
			var te *consent.TokenError
			if !errors.As(err, &te) || te.Code != "revoked" {
				t.Fatalf("after the outage healed, a withdrawn consent's token verified: %v", err)
			}
		}
	}
	refused(a) // the replica that withdrew: at once
	nodetest.WaitFor(t, 5*time.Second, "replica b to read the withdrawal from the revocation log", func() bool {
		return b.Domain.RevocationWatermark() >= head
	})
	refused(b)
}

// TestStalledRedisCostsACacheMiss (issue 12, finding 7): with Redis
// stalled (it accepts connections and never answers, as under SIGSTOP),
// verification, withdrawal and grants degrade to the database with short
// cache deadlines instead of hanging for seconds.
func TestStalledRedisCostsACacheMiss(t *testing.T) {
	a, _, proxy := replicasBehindProxy(t)
	ctx := context.Background()
	c, _, err := a.Domain.Grant(ctx, grantReq("stall-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Domain.IssueToken(ctx, c.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := consent.Expect{Audience: "partner", Purpose: "credit_risk_assessment"}
	proxy.Cut()
	// Each call must finish well inside its deadline: the cache's per-call
	// timeout (250 ms) bounds what a stalled Redis costs.
	bounded := func(what string, f func(context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := f(cctx); err != nil {
			t.Fatalf("%s with Redis stalled: %v", what, err)
		}
	}
	bounded("verify", func(ctx context.Context) error { _, err := a.Domain.Verify(ctx, tok.Token, want, "test"); return err })
	bounded("grant", func(ctx context.Context) error { _, _, err := a.Domain.Grant(ctx, grantReq("stall-2")); return err })
	bounded("withdraw", func(ctx context.Context) error { _, err := a.Domain.Withdraw(ctx, c.ID, "test"); return err })
	bounded("verify after withdrawal", func(ctx context.Context) error {
		_, err := a.Domain.Verify(ctx, tok.Token, want, "test")
		if err == nil {
			return errors.New("a withdrawn consent's token verified")
		}
		return nil
	})
}
