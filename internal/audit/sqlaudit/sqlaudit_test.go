package sqlaudit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// edSigner signs and verifies checkpoints with one Ed25519 key and counts
// the signatures it makes; fail makes SignCheckpoint fail.
type edSigner struct {
	kid   string
	priv  ed25519.PrivateKey
	signs atomic.Int64
	fail  atomic.Bool
}

func newSigner(t testing.TB) *edSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &edSigner{kid: "audit-1", priv: priv}
}

func (s *edSigner) SignCheckpoint(_ context.Context, msg []byte) (string, []byte, error) {
	if s.fail.Load() {
		return "", nil, errors.New("signer unavailable")
	}
	s.signs.Add(1)
	return s.kid, ed25519.Sign(s.priv, msg), nil
}

func (s *edSigner) VerifyCheckpoint(_ context.Context, kid string, msg, sig []byte) error {
	if kid != s.kid || !ed25519.Verify(s.priv.Public().(ed25519.PublicKey), msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func event(i int) audit.Event {
	return audit.Event{
		Actor: "admin:alice", Action: []string{"consent.grant", "consent.withdraw", "token.issue"}[i%3],
		Subject: fmt.Sprintf("ps_%d", i%5), Object: fmt.Sprintf("c-%d", i),
		Details: map[string]string{"purpose": "credit_risk_assessment", "n": fmt.Sprint(i)},
	}
}

// fill appends n events in transactions of up to 500 (AppendTx), fast even
// with SQLite's synchronous commits.
func fill(t testing.TB, db *sqldb.DB, l *sqlaudit.Log, n int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for end := min(done+500, n); done < end; done++ {
			if _, err := l.AppendTx(ctx, tx, event(done)); err != nil {
				tx.Rollback()
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func exec1(t *testing.T, db *sqldb.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), db.Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func verify(t *testing.T, l *sqlaudit.Log, v audit.SignatureVerifier) audit.Report {
	t.Helper()
	r, err := l.Verify(t.Context(), v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantChain checks that the log holds exactly seq 1..n and verifies.
func wantChain(t *testing.T, l *sqlaudit.Log, s *edSigner, n int64) {
	t.Helper()
	r := verify(t, l, s)
	if r.FirstBad != nil || r.Entries != n {
		t.Fatalf("Verify: %d entries, FirstBad %v; want %d intact", r.Entries, r.FirstBad, n)
	}
	var seq int64
	for {
		page, err := l.List(t.Context(), sqlaudit.Filter{AfterSeq: seq, Limit: sqlaudit.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if seq++; e.Seq != seq {
				t.Fatalf("seq %d follows %d", e.Seq, seq-1)
			}
		}
		if len(page) < sqlaudit.MaxLimit {
			break
		}
	}
	if seq != n {
		t.Fatalf("listed %d entries, want %d", seq, n)
	}
}

func TestAppendAndList(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		l := sqlaudit.New(db)
		at := time.Date(2025, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 7200))
		details := map[string]string{"purpose": "credit", "note": `<"quoted" & é>`}
		first, err := l.Append(ctx, audit.Event{At: at, Actor: "party:partner", Action: "consent.grant", Subject: "ps_a", Object: "c-1", Details: details})
		if err != nil {
			t.Fatal(err)
		}
		details["purpose"] = "changed by the caller afterwards"
		if first.Seq != 1 || !bytes.Equal(first.PrevHash, make([]byte, 32)) || !bytes.Equal(first.Hash, first.ComputeHash()) {
			t.Errorf("first entry: %+v", first)
		}
		if want := time.Date(2025, 5, 6, 5, 8, 9, 123456000, time.UTC); !first.At.Equal(want) || first.At.Location() != time.UTC {
			t.Errorf("At = %v, want %v in UTC", first.At, want)
		}
		before := time.Now().Add(-time.Second)
		for i := range 9 {
			if _, err := l.Append(ctx, event(i)); err != nil {
				t.Fatal(err)
			}
		}
		noDetails, err := l.Append(ctx, audit.Event{Actor: "system", Action: "consent.expire", Details: map[string]string{}})
		if err != nil {
			t.Fatal(err)
		}
		if noDetails.At.Before(before) || noDetails.Seq != 11 || noDetails.Details != nil {
			t.Errorf("defaults: %+v", noDetails)
		}

		all, err := l.List(ctx, sqlaudit.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 11 {
			t.Fatalf("listed %d entries", len(all))
		}
		got := all[0]
		if got.Details["purpose"] != "credit" || got.Details["note"] != `<"quoted" & é>` || !got.At.Equal(first.At) ||
			got.Actor != first.Actor || got.Subject != "ps_a" || !bytes.Equal(got.Hash, first.Hash) || !bytes.Equal(got.ComputeHash(), got.Hash) {
			t.Errorf("read back %+v, appended %+v", got, first)
		}
		for i, e := range all {
			if e.Seq != int64(i+1) || i > 0 && !bytes.Equal(e.PrevHash, all[i-1].Hash) {
				t.Fatalf("entry %d out of chain", i)
			}
		}

		filters := []struct {
			name string
			f    sqlaudit.Filter
			want []int64
		}{
			{"subject", sqlaudit.Filter{Subject: "ps_1"}, []int64{3, 8}},
			{"action", sqlaudit.Filter{Action: "consent.withdraw"}, []int64{3, 6, 9}},
			{"subject and action", sqlaudit.Filter{Subject: "ps_1", Action: "consent.withdraw"}, []int64{3}},
			{"after seq", sqlaudit.Filter{AfterSeq: 8}, []int64{9, 10, 11}},
			{"limit keeps the oldest", sqlaudit.Filter{AfterSeq: 2, Limit: 2}, []int64{3, 4}},
			{"no match", sqlaudit.Filter{Subject: "ps_unknown"}, nil},
		}
		for _, tc := range filters {
			t.Run(tc.name, func(t *testing.T) {
				es, err := l.List(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				var seqs []int64
				for _, e := range es {
					seqs = append(seqs, e.Seq)
				}
				if fmt.Sprint(seqs) != fmt.Sprint(tc.want) {
					t.Errorf("seqs %v, want %v", seqs, tc.want)
				}
			})
		}

		_, err = l.Append(ctx, audit.Event{Actor: "cli", Action: "subject.delete", Subject: "bad\xff"})
		if !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("invalid event: %v", err)
		}
		if all, _ := l.List(ctx, sqlaudit.Filter{AfterSeq: 11}); len(all) != 0 {
			t.Error("invalid event was stored")
		}
	})
}

// tamperLog is 120 entries with checkpoints at seq 50 and 120.
func tamperLog(t *testing.T, db *sqldb.DB, s *edSigner) *sqlaudit.Log {
	t.Helper()
	l := sqlaudit.New(db)
	fill(t, db, l, 50)
	if _, err := l.Checkpoint(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	fill(t, db, l, 70)
	if c, err := l.Checkpoint(t.Context(), s); err != nil || c.Seq != 120 {
		t.Fatalf("checkpoint %d, %v", c.Seq, err)
	}
	return l
}

func entry(t *testing.T, l *sqlaudit.Log, seq int64) audit.Entry {
	t.Helper()
	es, err := l.List(t.Context(), sqlaudit.Filter{AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(es) != 1 || es[0].Seq != seq {
		t.Fatalf("entry %d: %v, %v", seq, es, err)
	}
	return es[0]
}

// overwrite stores e's columns in the row with the given seq.
func overwrite(t *testing.T, db *sqldb.DB, seq int64, e audit.Entry) {
	t.Helper()
	d, err := json.Marshal(e.Details)
	if err != nil {
		t.Fatal(err)
	}
	if e.Details == nil {
		d = []byte("{}")
	}
	exec1(t, db, `UPDATE audit_log SET at = ?, actor = ?, action = ?, subject = ?, object = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
		e.At.UnixMicro(), e.Actor, e.Action, e.Subject, e.Object, string(d), e.PrevHash, e.Hash, seq)
}

// TestTamperingDetected changes the stored log directly in SQL, as an
// attacker with write access to the database would, and expects Verify to
// name the first bad entry.
func TestTamperingDetected(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log)
		seq    int64
		reason string
	}{
		{"untouched", func(*testing.T, *sqldb.DB, *sqlaudit.Log) {}, 0, ""},
		{"actor changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET actor = 'admin:mallory' WHERE seq = 42`)
		}, 42, "hash mismatch (entry altered)"},
		{"action changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET action = 'consent.grant' WHERE seq = 42`) // was token.issue
		}, 42, "hash mismatch (entry altered)"},
		{"subject changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET subject = 'ps_other' WHERE seq = 42`)
		}, 42, "hash mismatch (entry altered)"},
		{"object changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET object = 'c-0' WHERE seq = 42`)
		}, 42, "hash mismatch (entry altered)"},
		{"time changed by a microsecond", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET at = at + 1 WHERE seq = 42`)
		}, 42, "hash mismatch (entry altered)"},
		{"details changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET details = '{"n":"41","purpose":"marketing"}' WHERE seq = 42`)
		}, 42, "hash mismatch (entry altered)"},
		{"details not JSON", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET details = 'redacted' WHERE seq = 42`)
		}, 42, "details are not a JSON object"},
		{"hash changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET hash = ? WHERE seq = 42`, bytes.Repeat([]byte{7}, 32))
		}, 42, "hash mismatch (entry altered)"},
		{"prev_hash changed", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_log SET prev_hash = ? WHERE seq = 42`, bytes.Repeat([]byte{7}, 32))
		}, 42, "prev_hash does not match entry 41"},
		{"entry deleted", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `DELETE FROM audit_log WHERE seq = 42`)
		}, 42, "sequence gap: expected 42, found 43 (entry removed)"},
		{"first entry deleted", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `DELETE FROM audit_log WHERE seq = 1`)
		}, 1, "sequence gap: expected 1, found 2 (entry removed)"},
		{"entry deleted and the rest renumbered", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `DELETE FROM audit_log WHERE seq = 42`)
			for seq := 43; seq <= 120; seq++ {
				exec1(t, db, `UPDATE audit_log SET seq = ? WHERE seq = ?`, seq-1, seq)
			}
		}, 42, "prev_hash does not match entry 41 (entry removed or reordered)"},
		{"two entries swapped", func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log) {
			a, b := entry(t, l, 42), entry(t, l, 43)
			overwrite(t, db, 42, b)
			overwrite(t, db, 43, a)
		}, 42, "prev_hash does not match entry 41 (entry removed or reordered)"},
		{"two entries' events swapped", func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log) {
			a, b := entry(t, l, 42), entry(t, l, 43)
			a.Event, b.Event = b.Event, a.Event
			overwrite(t, db, 42, a)
			overwrite(t, db, 43, b)
		}, 42, "hash mismatch (entry altered)"},
		{"chain rewritten under a checkpoint", func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log) {
			prev := entry(t, l, 41).Hash
			for seq := int64(42); seq <= 120; seq++ {
				e := entry(t, l, seq)
				if seq == 42 {
					e.Actor = "admin:mallory"
				}
				e.PrevHash = prev
				e.Hash = e.ComputeHash()
				overwrite(t, db, seq, e)
				prev = e.Hash
			}
		}, 50, "checkpoint at seq 50: hash differs from the chain (entries altered or truncated)"},
		{"last entries deleted after a checkpoint", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `DELETE FROM audit_log WHERE seq > 100`)
		}, 101, "checkpoint at seq 120 is beyond the last entry 100 (log truncated)"},
		{"checkpoint signature forged", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_checkpoints SET signature = ? WHERE seq = 50`, bytes.Repeat([]byte{1}, ed25519.SignatureSize))
		}, 50, "checkpoint at seq 50: signature invalid"},
		{"checkpoint signed by another key", func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log) {
			mallory := newSigner(t)
			c := audit.Checkpoint{Seq: 120, Hash: entry(t, l, 120).Hash, At: time.Now()}
			_, sig, _ := mallory.SignCheckpoint(t.Context(), c.SignedBytes())
			exec1(t, db, `UPDATE audit_checkpoints SET signature = ?, at = ? WHERE seq = 120`, sig, c.At.UnixMicro())
		}, 120, "checkpoint at seq 120: signature invalid"},
		{"checkpoint hash altered", func(t *testing.T, db *sqldb.DB, l *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_checkpoints SET hash = ? WHERE seq = 50`, entry(t, l, 49).Hash)
		}, 50, "checkpoint at seq 50: signature invalid"},
		{"checkpoint moved to another seq", func(t *testing.T, db *sqldb.DB, _ *sqlaudit.Log) {
			exec1(t, db, `UPDATE audit_checkpoints SET seq = 60 WHERE seq = 50`)
		}, 60, "checkpoint at seq 60: signature invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				s := newSigner(t)
				l := tamperLog(t, db, s)
				tc.tamper(t, db, l)
				r := verify(t, l, s)
				if r.Checkpoints != 2 {
					t.Errorf("checked %d checkpoints, want 2", r.Checkpoints)
				}
				switch {
				case tc.seq == 0 && r.FirstBad != nil:
					t.Fatalf("untouched log: %v", r.FirstBad)
				case tc.seq == 0:
					if r.Entries != 120 || !bytes.Equal(r.Head, entry(t, l, 120).Hash) {
						t.Errorf("report %+v", r)
					}
				case r.FirstBad == nil:
					t.Fatal("tampering not detected")
				case r.FirstBad.Seq != tc.seq || !strings.Contains(r.FirstBad.Reason, tc.reason):
					t.Errorf("FirstBad = seq %d %q, want seq %d %q", r.FirstBad.Seq, r.FirstBad.Reason, tc.seq, tc.reason)
				}
			})
		})
	}
}

// TestUndetectableWithoutCheckpoint pins the limit the package doc states:
// entries after the last checkpoint can be cut or rewritten unnoticed, until
// an auditor brings a checkpoint they kept.
func TestUndetectableWithoutCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newSigner(t)
		l := tamperLog(t, db, s)
		kept, err := l.Checkpoint(t.Context(), s) // the auditor's copy of seq 120
		if err != nil {
			t.Fatal(err)
		}
		exec1(t, db, `DELETE FROM audit_checkpoints WHERE seq = 120`)
		exec1(t, db, `DELETE FROM audit_log WHERE seq > 100`)
		if r := verify(t, l, s); r.FirstBad != nil || r.Entries != 100 {
			t.Fatalf("got %+v: cutting entries after the last stored checkpoint was detectable after all?", r)
		}
		r, err := l.VerifyWith(t.Context(), s, []audit.Checkpoint{kept})
		if err != nil {
			t.Fatal(err)
		}
		if r.FirstBad == nil || r.FirstBad.Seq != 101 || r.Checkpoints != 2 {
			t.Fatalf("with the kept checkpoint: %+v", r)
		}
	})
}

func TestLargeLogVerifies(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newSigner(t)
		l := sqlaudit.New(db)
		for range 3 {
			fill(t, db, l, 1000)
			if _, err := l.Checkpoint(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		fill(t, db, l, 500)
		r := verify(t, l, s)
		if r.FirstBad != nil || r.Entries != 3500 || r.Checkpoints != 3 || !bytes.Equal(r.Head, entry(t, l, 3500).Hash) {
			t.Fatalf("report %+v", r)
		}
		// A change deep in the log, past the first page, is still found.
		exec1(t, db, `UPDATE audit_log SET subject = 'ps_x' WHERE seq = 2345`)
		if r := verify(t, l, s); r.FirstBad == nil || r.FirstBad.Seq != 2345 {
			t.Fatalf("FirstBad = %v, want seq 2345", r.FirstBad)
		}
	})
}

func TestConcurrentAppends(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		l := sqlaudit.New(db)
		var committed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 8*50)
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					ev := event(g*50 + i)
					switch i % 3 {
					case 0:
						if _, err := l.Append(ctx, ev); err != nil {
							errs <- err
							continue
						}
						committed.Add(1)
					default: // AppendTx, committed or rolled back by the caller
						tx, err := db.BeginTx(ctx, nil)
						if err != nil {
							errs <- err
							continue
						}
						if _, err := l.AppendTx(ctx, tx, ev); err != nil {
							tx.Rollback()
							errs <- err
							continue
						}
						if i%3 == 2 {
							tx.Rollback()
							continue
						}
						if err := tx.Commit(); err != nil {
							errs <- err
							continue
						}
						committed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		wantChain(t, l, newSigner(t), committed.Load())
	})
}

func TestAppendTxCommitsWithTheCaller(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		l := sqlaudit.New(db)
		fill(t, db, l, 3)
		change := func(key string, commit bool) audit.Entry {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO node_info (key, value, updated_at) VALUES (?, 'v', 0)`), key); err != nil {
				t.Fatal(err)
			}
			e, err := l.AppendTx(ctx, tx, audit.Event{Actor: "admin:alice", Action: "purpose.create", Object: key})
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			return e
		}
		exists := func(key string) bool {
			var n int
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM node_info WHERE key = ?`), key).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n == 1
		}

		if e := change("rolled-back", false); e.Seq != 4 {
			t.Errorf("AppendTx returned seq %d, want 4", e.Seq)
		}
		if exists("rolled-back") {
			t.Error("rolled-back change stored")
		}
		wantChain(t, l, newSigner(t), 3)

		if e := change("committed", true); e.Seq != 4 || !bytes.Equal(e.PrevHash, entry(t, l, 3).Hash) {
			t.Errorf("after a rollback: seq %d", e.Seq)
		}
		if !exists("committed") || entry(t, l, 4).Object != "committed" {
			t.Error("committed change or its entry missing")
		}
		wantChain(t, l, newSigner(t), 4)
	})
}

// helperEnv carries the database URL to the child processes of
// TestAppendFromTwoProcesses.
const helperEnv = "FEDRISK_AUDIT_TEST_HELPER_DB"

// TestAppendFromTwoProcesses appends from two child processes (each with its
// own connection pool, as two nodes would) and this one, at once, to one
// database: the result must be one chain.
func TestAppendFromTwoProcesses(t *testing.T) {
	if url := os.Getenv(helperEnv); url != "" {
		appendAsHelper(t, url)
		return
	}
	urls := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "audit.db") },
		"postgres": func(t *testing.T) string { return sqldbtest.PostgresURL(t) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			url := urls[name](t)
			db, err := sqldb.Open(t.Context(), url, "")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			var children []*exec.Cmd
			var outs []*bytes.Buffer
			for range 2 {
				cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestAppendFromTwoProcesses$", "-test.count=1")
				cmd.Env = append(os.Environ(), helperEnv+"="+url)
				out := new(bytes.Buffer)
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				children, outs = append(children, cmd), append(outs, out)
			}
			l := sqlaudit.New(db)
			for i := range helperAppends {
				if _, err := l.Append(t.Context(), event(i)); err != nil {
					t.Error(err)
				}
			}
			for i, cmd := range children {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("child %d: %v\n%s", i, err, outs[i])
				}
			}
			wantChain(t, l, newSigner(t), 3*helperAppends)
		})
	}
}

const helperAppends = 100

func appendAsHelper(t *testing.T, url string) {
	db, err := sqldb.Open(t.Context(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := sqlaudit.New(db)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range helperAppends / 4 {
				if _, err := l.Append(t.Context(), event(g*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		s := newSigner(t)
		l := sqlaudit.New(db)
		count := func() int {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_checkpoints`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		if c, err := l.Checkpoint(ctx, s); err != nil || c.Seq != 0 || count() != 0 || s.signs.Load() != 0 {
			t.Fatalf("empty log: %+v, %v", c, err)
		}
		fill(t, db, l, 5)
		c1, err := l.Checkpoint(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if c1.Seq != 5 || !bytes.Equal(c1.Hash, entry(t, l, 5).Hash) || c1.KID != s.kid ||
			s.VerifyCheckpoint(ctx, c1.KID, c1.SignedBytes(), c1.Signature) != nil {
			t.Fatalf("checkpoint %+v", c1)
		}
		again, err := l.Checkpoint(ctx, s)
		if err != nil || again.Seq != 5 || !bytes.Equal(again.Signature, c1.Signature) || !again.At.Equal(c1.At) || s.signs.Load() != 1 {
			t.Fatalf("nothing appended: %+v, %v, %d signatures", again, err, s.signs.Load())
		}

		fill(t, db, l, 2)
		s.fail.Store(true)
		if _, err := l.Checkpoint(ctx, s); err == nil || count() != 1 {
			t.Fatalf("failing signer: %v, %d checkpoints", err, count())
		}
		s.fail.Store(false)

		// Several nodes checkpointing the same head store one checkpoint.
		var wg sync.WaitGroup
		got := make([]audit.Checkpoint, 6)
		for i := range got {
			wg.Go(func() {
				var err error
				if got[i], err = l.Checkpoint(ctx, s); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, c := range got {
			if c.Seq != 7 || !bytes.Equal(c.Signature, got[0].Signature) {
				t.Errorf("concurrent checkpoints differ: %d", c.Seq)
			}
		}
		if count() != 2 {
			t.Errorf("%d checkpoints stored, want 2", count())
		}
		if r := verify(t, l, s); r.FirstBad != nil || r.Checkpoints != 2 {
			t.Errorf("report %+v", r)
		}
	})
}

func TestRunCheckpoints(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newSigner(t)
		l := sqlaudit.New(db)
		last := func() int64 {
			var seq sql.NullInt64
			if err := db.QueryRowContext(t.Context(), `SELECT MAX(seq) FROM audit_checkpoints`).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			return seq.Int64
		}
		run := func(every time.Duration) (stop func()) {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { l.RunCheckpoints(ctx, s, every, nil); close(done) }()
			return func() { cancel(); <-done }
		}

		t.Run("periodic", func(t *testing.T) {
			stop := run(5 * time.Millisecond)
			defer stop()
			fill(t, db, l, 3)
			for deadline := time.Now().Add(30 * time.Second); last() != 3; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no checkpoint of seq 3 within 30s")
				}
			}
		})
		t.Run("on shutdown", func(t *testing.T) {
			stop := run(time.Hour)
			fill(t, db, l, 2)
			stop()
			if got := last(); got != 5 {
				t.Fatalf("last checkpoint at %d, want 5 (made on shutdown)", got)
			}
		})
	})
}

func BenchmarkAppend(b *testing.B) {
	db := sqldbtest.OpenSQLite(b, true)
	l := sqlaudit.New(db)
	ctx := context.Background()
	ev := event(1)
	for b.Loop() {
		if _, err := l.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
