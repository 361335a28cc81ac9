package consent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// pagedLog is a revocation log of head entries whose Since answers pages
// of limit entries, failing once failAt pages were read (0: never).
type pagedLog struct {
	head   int64
	revs   []Revocation
	pages  int
	failAt int
}

func (l *pagedLog) Head(context.Context) (int64, error) { return l.head, nil }

func (l *pagedLog) Since(_ context.Context, _ string, after int64, limit int) ([]Revocation, int64, error) {
	l.pages++
	if l.failAt > 0 && l.pages >= l.failAt {
		return nil, after, errors.New("database went away")
	}
	// Every seq is an entry (grants, mostly); a page is limit entries.
	upTo := min(after+int64(limit), l.head)
	var out []Revocation
	for _, r := range l.revs {
		if r.Seq > after && r.Seq <= upTo {
			out = append(out, r)
		}
	}
	return out, upTo, nil
}

func watchedService(l RevocationLog, now time.Time) *Service {
	return &Service{cfg: Config{RevocationLog: l, Now: func() time.Time { return now }}, log: slog.New(slog.DiscardHandler), watch: newWatch(time.Hour)}
}

// TestWatchFreshOnlyWhenCaughtUp (review finding C1): a watch reading a
// backlog page by page was called fresh after its first page, so a
// withdrawal further down the backlog did not count yet while cached
// verifications were trusted. A pass now reads up to the head it saw at
// its start before it calls the watch fresh, and a pass that fails midway
// leaves it stale.
func TestWatchFreshOnlyWhenCaughtUp(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	l := &pagedLog{head: 1500, revs: []Revocation{{Seq: 1400, Kind: RevocationRevoked, ConsentID: "c-x"}}}
	s := watchedService(l, now)
	s.watch.running, s.watch.floor, s.watch.seen = true, 0, 0 // started at 0, 1500 entries behind
	s.pollRevocations(context.Background())
	if s.watch.trusts("c-x", "p", 10, now) {
		t.Fatal("a consent withdrawn in the backlog is trusted from cache")
	}
	if !s.watch.trusts("c-y", "p", 10, now) || s.watch.seen != 1500 {
		t.Fatalf("caught up to %d, trusts an untouched consent: %v", s.watch.seen, s.watch.trusts("c-y", "p", 10, now))
	}

	l2 := &pagedLog{head: 3500, failAt: 2}
	s2 := watchedService(l2, now)
	s2.watch.running, s2.watch.floor, s2.watch.seen = true, 0, 0
	s2.pollRevocations(context.Background())
	if s2.watch.trusts("c-y", "p", 10, now) {
		t.Fatal("a watch that stopped midway through a backlog is trusted")
	}
}

// TestWatchFreshAsOfThePassStart: the staleness bound counts from when a
// pass started, not from when its read returned.
func TestWatchFreshAsOfThePassStart(t *testing.T) {
	start := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	clock := start
	l := &pagedLog{head: 10}
	s := watchedService(l, start)
	s.cfg.Now = func() time.Time { t := clock; clock = clock.Add(800 * time.Millisecond); return t } // every read of the clock costs 0.8 s
	s.watch.running = true
	s.pollRevocations(context.Background())
	if !s.watch.fresh.Equal(start) {
		t.Fatalf("fresh as of %v, want the pass's start %v", s.watch.fresh, start)
	}
}
