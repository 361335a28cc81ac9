package consent

import (
	"context"
	"sync"
	"time"
)

// Revocation is one event of the revocation log: a consent that no longer
// backs its tokens ("revoked": withdrawn, superseded, or its subject
// deleted), or a purpose whose earlier verifications no longer count
// ("purge": a new policy asks for renewal).
type Revocation struct {
	Seq       int64
	Kind      string // "revoked" or "purge"
	ConsentID string
	Purpose   string
}

// Kinds of revocation.
const (
	RevocationRevoked = "revoked"
	RevocationPurge   = "purge"
)

// RevocationLog reads revocations from where they are committed: the audit
// log, written in the same transaction as the change. It is the source of
// truth the revocation stream to hosts and the node's own verification
// cache follow, so a withdrawal wins over every cache whatever the cache
// server does.
type RevocationLog interface {
	// Head returns the sequence number of the last committed entry.
	Head(ctx context.Context) (int64, error)
	// Since returns the revocations for party ("" for every party) after
	// seq, at most limit of them, and the seq up to which the log has been
	// read.
	Since(ctx context.Context, party string, after int64, limit int) ([]Revocation, int64, error)
}

// Timing of the revocation watch.
const (
	// RevocationPoll is how often the watch reads the revocation log.
	RevocationPoll = 200 * time.Millisecond
	// RevocationMaxStale: a cached verification counts only while the
	// watch read the log within this long (the withdrawal bound).
	RevocationMaxStale = time.Second
	revocationPage     = 1000
)

// watch is what this process knows of the revocation log: every
// revocation after floor, as of seen, read at fresh. A cached verification
// (its entry carries the log's head when the consent was read) is trusted
// only when the watch is fresh, the entry is newer than floor, and no
// revocation of its consent or purge of its purpose came after it.
type watch struct {
	mu      sync.RWMutex
	running bool
	floor   int64
	seen    int64
	fresh   time.Time
	denied  map[string]time.Time // consent id → until
	purged  map[string]int64     // purpose → seq of its last purge
	keepFor time.Duration
}

func newWatch(keepFor time.Duration) *watch {
	return &watch{denied: map[string]time.Time{}, purged: map[string]int64{}, keepFor: keepFor}
}

// trusts reports whether a verification of consentID for purpose cached
// at log position at may be used now.
func (w *watch) trusts(consentID, purpose string, at int64, now time.Time) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.running || now.Sub(w.fresh) > RevocationMaxStale || at < w.floor || at < w.purged[purpose] {
		return false
	}
	_, denied := w.denied[consentID]
	return !denied
}

// deny records a revocation this process committed, before the watch
// reads it back from the log.
func (w *watch) deny(consentID string, now time.Time) {
	w.mu.Lock()
	w.denied[consentID] = now.Add(w.keepFor)
	w.mu.Unlock()
}

func (w *watch) purge(purpose string, seq int64) {
	w.mu.Lock()
	if seq > w.purged[purpose] {
		w.purged[purpose] = seq
	}
	w.mu.Unlock()
}

// stale makes the watch trust nothing cached until it reads the log again.
func (w *watch) stale() {
	w.mu.Lock()
	w.fresh = time.Time{}
	w.mu.Unlock()
}

// apply records revocations read from the log up to seen; caughtUp says
// the read reached the log's head as of now, so the watch is fresh.
func (w *watch) apply(revs []Revocation, seen int64, now time.Time, caughtUp bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range revs {
		switch r.Kind {
		case RevocationRevoked:
			w.denied[r.ConsentID] = now.Add(w.keepFor)
		case RevocationPurge:
			if r.Seq > w.purged[r.Purpose] {
				w.purged[r.Purpose] = r.Seq
			}
		}
	}
	if seen > w.seen {
		w.seen = seen
	}
	if caughtUp {
		w.fresh = now
	}
	for id, until := range w.denied {
		if now.After(until) {
			delete(w.denied, id)
		}
	}
}

// WatchRevocations follows the revocation log until ctx ends, so cached
// verifications of this process never outlive a withdrawal made by any
// process sharing the database, whatever the cache server does: a
// verification cached before this process started, or while the log
// could not be read for RevocationMaxStale, is checked against the
// database again. Without a running watch (or a RevocationLog) the cache
// of verifications is not used at all.
func (s *Service) WatchRevocations(ctx context.Context) {
	if s.cfg.RevocationLog == nil {
		return
	}
	log := s.cfg.RevocationLog
	var head int64
	for {
		h, err := log.Head(ctx)
		if err == nil {
			head = h
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(RevocationPoll):
		}
	}
	w := s.watch
	w.mu.Lock()
	w.running, w.floor, w.seen, w.fresh = true, head, head, s.cfg.Now()
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()
	tick := time.NewTicker(RevocationPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.pollRevocations(ctx)
	}
}

// pollRevocations reads the revocation log up to its head as of the start
// of the pass, and only then calls the watch fresh, as of that start: a
// watch that is paging through a backlog, or whose read hangs, is stale.
func (s *Service) pollRevocations(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, RevocationMaxStale)
	defer cancel()
	start := s.cfg.Now()
	log, w := s.cfg.RevocationLog, s.watch
	head, err := log.Head(ctx)
	if err != nil {
		s.log.DebugContext(ctx, "revocation log unreadable: cached verifications are not used until it is read again", "err", err)
		return
	}
	w.mu.RLock()
	after := w.seen
	w.mu.RUnlock()
	var revs []Revocation
	for after < head {
		page, upTo, err := log.Since(ctx, "", after, revocationPage)
		if err != nil {
			s.log.DebugContext(ctx, "revocation log unreadable: cached verifications are not used until it is read again", "err", err)
			return
		}
		revs = append(revs, page...)
		if upTo <= after {
			break // the log did not move: read again at the next tick
		}
		after = upTo
	}
	w.apply(revs, after, start, after >= head)
}

// RevocationWatermark is the position of the revocation log up to which
// this process knows every revocation (0 while the watch is not running).
func (s *Service) RevocationWatermark() int64 {
	s.watch.mu.RLock()
	defer s.watch.mu.RUnlock()
	if !s.watch.running {
		return 0
	}
	return s.watch.seen
}
