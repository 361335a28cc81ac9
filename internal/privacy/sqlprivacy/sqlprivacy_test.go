package sqlprivacy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/privacy/privacytest"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// TestConformance runs the ledger suite on SQLite and, when
// FEDRISK_TEST_POSTGRES_URL is set, PostgreSQL. On SQLite a reopened
// ledger has its own database handle on the same file, as another process
// would; on PostgreSQL it shares the handle (the schema name is private to
// the test) but nothing else.
func TestConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			privacytest.Run(t, func(t *testing.T, now func() time.Time) (privacy.Ledger, func() privacy.Ledger) {
				db := b.Open(t, true)
				opts := Options{Host: privacytest.Host, Now: now}
				reopen := func() privacy.Ledger {
					if db.Dialect != sqldb.SQLite {
						return New(db, opts)
					}
					other, err := sqldb.Open(context.Background(), db.Location, "")
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { other.Close() })
					return New(other, opts)
				}
				return New(db, opts), reopen
			})
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := cursor{Party: "guest", Purpose: "credit", Subject: "ps_ü/\"x"}
	got, err := decodeCursor(encodeCursor(c))
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "!!", encodeCursor(cursor{Party: "p"}), "e30"} {
		if _, err := decodeCursor(bad); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("decodeCursor(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// FuzzDecodeCursor: page cursors come from admin clients.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(cursor{Party: "a", Purpose: "b", Subject: "c"}))
	f.Add("e30")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if c.Party == "" || c.Purpose == "" || c.Subject == "" {
			t.Fatalf("accepted an incomplete cursor %+v", c)
		}
		if again, err := decodeCursor(encodeCursor(c)); err != nil || again != c {
			t.Fatalf("re-encoded cursor: %+v, %v", again, err)
		}
	})
}

// BenchmarkCharge: one charge (a transaction with the conditional upsert
// and the charge row) per iteration, each on a subject of its own, on
// SQLite and (when set) PostgreSQL; "parallel" runs them from
// GOMAXPROCS×4 goroutines on 64 subjects.
func BenchmarkCharge(b *testing.B) {
	for _, be := range sqldbtest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			l := New(be.Open(b, true), Options{Host: "bench"})
			if err := l.SetPolicy(ctx, "credit", privacy.Policy{Window: 24 * time.Hour, Total: privacy.MaxAmount}, "test"); err != nil {
				b.Fatal(err)
			}
			b.Run("serial", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					if _, err := l.Charge(ctx, privacy.Key{Party: "guest", Subject: fmt.Sprintf("s%d", i), Purpose: "credit"}, privacy.OneEpsilon); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				var n atomic.Int64
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						k := privacy.Key{Party: "guest", Subject: fmt.Sprintf("p%d", n.Add(1)%64), Purpose: "credit"}
						if _, err := l.Charge(ctx, k, 1); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// TestPolicyChangesAudited: every policy change is in the audit log, in
// the transaction that makes it: who, the old policy and the new one.
func TestPolicyChangesAudited(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t, true)
			log := sqlaudit.New(db)
			l := New(db, Options{Host: "h", Audit: log})
			p := privacy.Policy{Window: 24 * time.Hour, Total: 10 * privacy.OneEpsilon}
			if err := l.SetPolicy(ctx, "credit", p, "config"); err != nil {
				t.Fatal(err)
			}
			p.Window = 86399 * time.Second
			if err := l.SetPolicy(ctx, "credit", p, "token:ana"); err != nil {
				t.Fatal(err)
			}
			if err := l.SetPolicy(ctx, "credit", privacy.Policy{Window: time.Millisecond}, "token:ana"); !errors.Is(err, privacy.ErrInvalid) {
				t.Fatalf("invalid policy: %v", err)
			}
			entries, err := log.List(ctx, sqlaudit.Filter{Action: "privacy.policy.set"})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Fatalf("%d entries, want 2: %+v", len(entries), entries)
			}
			second := entries[1]
			if second.Actor != "token:ana" || second.Object != "credit" || second.Details["old_window"] != "24h0m0s" ||
				second.Details["window"] != "23h59m59s" || second.Details["total"] != "10ε" || second.Details["old_total"] != "10ε" {
				t.Errorf("audit entry %+v", second)
			}
			if _, ok := entries[0].Details["old_window"]; ok || entries[0].Actor != "config" {
				t.Errorf("first policy: %+v", entries[0])
			}
			if rep, err := log.Verify(ctx, nil); err != nil || rep.FirstBad != nil || rep.Entries != 2 {
				t.Errorf("audit chain: %+v %v", rep, err)
			}
		})
	}
}
