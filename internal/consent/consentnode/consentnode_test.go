package consentnode_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func newService(tb testing.TB, db *sqldb.DB) *consentnode.Service {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	mem := cache.NewMemory(cache.MemoryOptions{})
	tb.Cleanup(func() { mem.Close() })
	svc, err := nodetest.Consent(tb, cfg, nodetest.Options{DB: db, Cache: mem, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	if _, err := svc.Domain.CreatePurpose(context.Background(), consent.PurposeRequest{ID: "credit_risk_assessment", PolicyText: "v1", Actor: "test"}); err != nil {
		tb.Fatal(err)
	}
	return svc
}

func grantReq(subject string) consent.GrantRequest {
	return consent.GrantRequest{Subject: subject, Purpose: "credit_risk_assessment", Party: "partner", Categories: []string{"telecom.usage"},
		PolicyVersion: 1, Actor: "bench", Evidence: consent.Evidence{Channel: "web", Collector: "bench", CollectedAt: time.Now().Add(-time.Minute)}}
}

func TestDevRootKeyFile(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	k1, err := node.RootKey(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, "root.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("root.key: %v %v", st, err)
	}
	k2, err := node.RootKey(cfg, slog.New(slog.DiscardHandler))
	if err != nil || string(k1) != string(k2) || len(k1) < 32 {
		t.Errorf("root key not stable across starts")
	}
	cfg.EncryptionKey = "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c="
	if k3, err := node.RootKey(cfg, slog.New(slog.DiscardHandler)); err != nil || string(k3) == string(k1) {
		t.Errorf("ENCRYPTION_KEY must win over the file: %v", err)
	}
}

// TestWrongRootKeyRefused: a node started with another ENCRYPTION_KEY on
// an existing database stops with a clear error instead of writing data
// nobody can read.
func TestWrongRootKeyRefused(t *testing.T) {
	db := sqldbtest.OpenSQLite(t, true)
	newService(t, db)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.EncryptionKey = "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c="
	_, err := nodetest.Consent(t, cfg, nodetest.Options{DB: db, Cache: cache.NewMemory(cache.MemoryOptions{}), Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("a wrong root key was accepted")
	}
}

func BenchmarkGrant(b *testing.B) {
	for _, be := range sqldbtest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			svc := newService(b, be.Open(b, true))
			ctx := context.Background()
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := svc.Domain.Grant(ctx, grantReq(fmt.Sprintf("bench-%d", n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
		})
	}
}

func BenchmarkIssueToken(b *testing.B) {
	svc := newService(b, sqldbtest.OpenSQLite(b, true))
	ctx := context.Background()
	c, _, err := svc.Domain.Grant(ctx, grantReq("bench-token"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Domain.IssueToken(ctx, c.ID, "bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkVerifyToken(b *testing.B) {
	svc := newService(b, sqldbtest.OpenSQLite(b, true))
	ctx := context.Background()
	c, _, err := svc.Domain.Grant(ctx, grantReq("bench-verify"))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := svc.Domain.IssueToken(ctx, c.ID, "bench")
	if err != nil {
		b.Fatal(err)
	}
	want := consent.Expect{Audience: "partner", Purpose: "credit_risk_assessment"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Domain.Verify(ctx, tok.Token, want, "bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// TestReplicasShareDenylistOnRedis: two replicas of one party on one
// PostgreSQL (or SQLite) database and one Redis. A token verified (and so
// cached) at replica B is refused there at once after replica A withdraws
// its consent.
func TestReplicasShareDenylistOnRedis(t *testing.T) {
	redisURL := os.Getenv("FEDRISK_TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("FEDRISK_TEST_REDIS_URL not set")
	}
	backends := sqldbtest.Backends(t)
	be := backends[len(backends)-1] // PostgreSQL when available
	db := be.Open(t, true)
	ctx := context.Background()
	prefix := fmt.Sprintf("fedrisk-test-%d", time.Now().UnixNano())
	replica := func() *consentnode.Service {
		rc, err := cache.NewRedis(ctx, redisURL, cache.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.EncryptionKey = "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c="
		svc, err := nodetest.Consent(t, cfg, nodetest.Options{DB: db, Cache: rc, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		return svc
	}
	a, b := replica(), replica()
	if _, err := a.Domain.CreatePurpose(ctx, consent.PurposeRequest{ID: "credit_risk_assessment", PolicyText: "v1", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	c, _, err := a.Domain.Grant(ctx, grantReq("replica-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Domain.IssueToken(ctx, c.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := consent.Expect{Audience: "partner", Purpose: "credit_risk_assessment"}
	if _, err := b.Domain.Verify(ctx, tok.Token, want, "test"); err != nil {
		t.Fatalf("replica B: %v", err)
	}
	if _, err := a.Domain.Withdraw(ctx, c.ID, "test"); err != nil {
		t.Fatal(err)
	}
	var te *consent.TokenError
	if _, err := b.Domain.Verify(ctx, tok.Token, want, "test"); !errors.As(err, &te) || te.Code != "revoked" {
		t.Errorf("replica B after withdrawal at A: %v", err)
	}
}

func TestFilterUsable(t *testing.T) {
	for _, be := range sqldbtest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			svc := newService(t, be.Open(t, true))
			ctx := context.Background()
			for _, s := range []string{"a-1", "a-2", "a-3"} {
				if _, _, err := svc.Domain.Grant(ctx, grantReq(s)); err != nil {
					t.Fatal(err)
				}
			}
			other := grantReq("a-4")
			other.Party = "telco"
			if _, _, err := svc.Domain.Grant(ctx, other); err != nil {
				t.Fatal(err)
			}
			list, _ := svc.Domain.ListBySubject(ctx, "a-2")
			if _, err := svc.Domain.Withdraw(ctx, list[0].ID, "test"); err != nil {
				t.Fatal(err)
			}
			got, err := svc.Domain.FilterUsable(ctx, "partner", "credit_risk_assessment", []string{"A-1 ", "a-2", "a-3", "a-4", "nobody", ""})
			if err != nil {
				t.Fatal(err)
			}
			want := []bool{true, false, true, false, false, false}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}
