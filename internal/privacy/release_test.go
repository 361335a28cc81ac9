package privacy_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/privacy/sqlprivacy"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

var ctx = context.Background()

// clock is a settable clock shared by the memory cache and the ledger.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	db     *sqldb.DB
	ledger *sqlprivacy.Ledger
	cache  *cache.Memory
	clock  *clock
	mech   privacy.Mechanism
}

const purpose = "credit_risk_assessment"

// newFixture: a real ledger on SQLite with a policy of total ε for the
// purpose, a memory cache, and the Laplace mechanism with B = 1, ε = 0.5.
func newFixture(t testing.TB, total privacy.Amount, on privacy.ExhaustionPolicy) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
	db := sqldbtest.OpenSQLite(t, true)
	l := sqlprivacy.New(db, sqlprivacy.Options{Host: "host-telco", Now: c.Now})
	if err := l.SetPolicy(ctx, purpose, privacy.Policy{Window: 24 * time.Hour, Total: total, OnExhausted: on}, "test"); err != nil {
		t.Fatal(err)
	}
	mem := cache.NewMemory(cache.MemoryOptions{Now: c.Now})
	t.Cleanup(func() { mem.Close() })
	m, err := privacy.Laplace(1, privacy.OneEpsilon/2)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, ledger: l, cache: mem, clock: c, mech: m}
}

func (f *fixture) releaser(t testing.TB, mod func(*privacy.ReleaserOptions)) *privacy.Releaser {
	t.Helper()
	o := privacy.ReleaserOptions{Mechanism: f.mech, Ledger: f.ledger, Cache: f.cache, Window: 10 * time.Minute}
	if mod != nil {
		mod(&o)
	}
	r, err := privacy.NewReleaser(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) remaining(t *testing.T, party, subject string) privacy.Amount {
	t.Helper()
	b, err := f.ledger.Remaining(ctx, privacy.Key{Party: party, Subject: subject, Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	return b.Remaining
}

func request(subject, snapshot string) privacy.Request {
	return privacy.Request{Party: "guest-bank", Purpose: purpose, Subject: subject, ModelVersion: "lr-v3", Snapshot: snapshot, Score: 0.42}
}

func TestReleaseKey(t *testing.T) {
	k := privacy.ReleaseKey("ps_1", "lr-v3", "snap-9")
	if k != privacy.ReleaseKey("ps_1", "lr-v3", "snap-9") || len(k) != 64 {
		t.Fatalf("ReleaseKey not stable: %q", k)
	}
	for _, other := range []string{
		privacy.ReleaseKey("ps_2", "lr-v3", "snap-9"),
		privacy.ReleaseKey("ps_1", "lr-v4", "snap-9"),
		privacy.ReleaseKey("ps_1", "lr-v3", "snap-8"),
		privacy.ReleaseKey("ps_1lr-v3", "", "snap-9"), // length-prefixed: no concatenation collisions
		privacy.ReleaseKey("ps_1", "lr-v3snap-9", ""),
	} {
		if other == k {
			t.Fatalf("distinct triples share key %s", k)
		}
	}
}

// TestIdempotentRelease: within the cache window the same (party, purpose,
// subject, model version, snapshot) gets the same noisy value, uncharged;
// anything else, or the same after the window, is a fresh charged release.
func TestIdempotentRelease(t *testing.T) {
	f := newFixture(t, 5*privacy.OneEpsilon, privacy.Refuse)
	r := f.releaser(t, nil)
	cost := f.mech.Cost()

	first, err := r.Release(ctx, request("ps_1", "snap-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || first.Charge.ID == "" || first.Charge.Cost != cost || first.Value != privacy.FromFixed(first.Fixed) {
		t.Fatalf("first release %+v", first)
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != 5*privacy.OneEpsilon-cost {
		t.Fatalf("after one release remaining %v", got)
	}
	for range 5 {
		again, err := r.Release(ctx, request("ps_1", "snap-1"))
		if err != nil {
			t.Fatal(err)
		}
		if !again.Cached || again.Value != first.Value || again.Fixed != first.Fixed || again.Charge.ID != "" {
			t.Fatalf("repeat %+v, first %+v", again, first)
		}
	}
	// The score in a repeat does not matter: the release is about the
	// (subject, model, snapshot), and its value is fixed.
	req := request("ps_1", "snap-1")
	req.Score = -0.9
	if again, err := r.Release(ctx, req); err != nil || again.Value != first.Value {
		t.Fatalf("repeat with another score: %+v, %v", again, err)
	}
	// Another releaser on the same cache (another request handler) agrees.
	if again, err := f.releaser(t, nil).Release(ctx, request("ps_1", "snap-1")); err != nil || !again.Cached || again.Value != first.Value {
		t.Fatalf("second releaser: %+v, %v", again, err)
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != 5*privacy.OneEpsilon-cost {
		t.Fatalf("repeats were charged: remaining %v", got)
	}

	// New snapshot, new model version, another party: fresh and charged.
	for _, req := range []privacy.Request{
		request("ps_1", "snap-2"),
		{Party: "guest-bank", Purpose: purpose, Subject: "ps_1", ModelVersion: "lr-v4", Snapshot: "snap-1", Score: 0.42},
	} {
		rel, err := r.Release(ctx, req)
		if err != nil || rel.Cached || rel.Charge.ID == "" {
			t.Fatalf("fresh release %+v, %v", rel, err)
		}
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != 5*privacy.OneEpsilon-3*cost {
		t.Fatalf("after three fresh releases remaining %v", got)
	}
	other := request("ps_1", "snap-1")
	other.Party = "guest-insurer"
	if rel, err := r.Release(ctx, other); err != nil || rel.Cached {
		t.Fatalf("another party: %+v, %v", rel, err)
	}
	if got := f.remaining(t, "guest-insurer", "ps_1"); got != 5*privacy.OneEpsilon-cost {
		t.Fatalf("another party's budget: %v", got)
	}

	// After the cache window the value is drawn (and paid for) again.
	f.clock.Advance(10*time.Minute + time.Second)
	rel, err := r.Release(ctx, request("ps_1", "snap-1"))
	if err != nil || rel.Cached || rel.Charge.ID == "" {
		t.Fatalf("after the window: %+v, %v", rel, err)
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != 5*privacy.OneEpsilon-4*cost {
		t.Fatalf("after the window remaining %v", got)
	}
}

// TestConcurrentIdenticalReleases: identical requests at once pay once
// and all get the one value.
func TestConcurrentIdenticalReleases(t *testing.T) {
	f := newFixture(t, 5*privacy.OneEpsilon, privacy.Refuse)
	r := f.releaser(t, nil)
	const n = 24
	vals := make([]privacy.Release, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { vals[i], errs[i] = r.Release(ctx, request("ps_hot", "snap-1")) })
	}
	wg.Wait()
	charged := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if vals[i].Fixed != vals[0].Fixed {
			t.Fatalf("release %d = %d, release 0 = %d", i, vals[i].Fixed, vals[0].Fixed)
		}
		if !vals[i].Cached {
			charged++
		}
	}
	if charged != 1 || f.remaining(t, "guest-bank", "ps_hot") != 5*privacy.OneEpsilon-f.mech.Cost() {
		t.Fatalf("%d fresh releases, remaining %v", charged, f.remaining(t, "guest-bank", "ps_hot"))
	}
}

// TestReleaseExhausted: fresh releases stop when the budget is spent, with
// an error that carries the purpose's exhaustion policy; releases already
// made can still be repeated from the cache, free.
func TestReleaseExhausted(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Degrade) // two releases at ε = 0.5
	r := f.releaser(t, nil)
	a, err := r.Release(ctx, request("ps_1", "snap-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Release(ctx, request("ps_1", "snap-2")); err != nil {
		t.Fatal(err)
	}
	_, err = r.Release(ctx, request("ps_1", "snap-3"))
	var ex *privacy.ExhaustedError
	if !errors.Is(err, privacy.ErrBudgetExhausted) || !errors.As(err, &ex) || ex.OnExhausted != privacy.Degrade {
		t.Fatalf("third release: %v, want ErrBudgetExhausted with policy degrade", err)
	}
	if again, err := r.Release(ctx, request("ps_1", "snap-1")); err != nil || again.Value != a.Value {
		t.Fatalf("repeat after exhaustion: %+v, %v", again, err)
	}
	// The next window has budget again.
	f.clock.Advance(24 * time.Hour)
	if _, err := r.Release(ctx, request("ps_1", "snap-3")); err != nil {
		t.Fatalf("next window: %v", err)
	}
}

// TestReleaseFailureRefunds: when no noise can be drawn the charge is
// refunded and nothing is cached.
func TestReleaseFailureRefunds(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Refuse)
	broken := f.releaser(t, func(o *privacy.ReleaserOptions) { o.Random = failingReader{} })
	for range 3 { // more attempts than the budget could pay for
		if _, err := broken.Release(ctx, request("ps_1", "snap-1")); !errors.Is(err, errNoEntropy) {
			t.Fatalf("release without randomness: %v", err)
		}
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != privacy.OneEpsilon {
		t.Fatalf("failed releases cost %v", privacy.OneEpsilon-got)
	}
	rel, err := f.releaser(t, nil).Release(ctx, request("ps_1", "snap-1"))
	if err != nil || rel.Cached {
		t.Fatalf("release after failures: %+v, %v (a failed release must not be cached)", rel, err)
	}
}

// panicReader stands for the process dying in the middle of a release,
// after the charge and before any value exists.
type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("process killed") }

// TestCrashAfterCharge: a process that dies between charge and release
// never refunds: the charge stays counted for the next process, so the
// budget is never overspent.
func TestCrashAfterCharge(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Refuse) // two releases at ε = 0.5
	crashing := f.releaser(t, func(o *privacy.ReleaserOptions) { o.Random = panicReader{} })
	crash := func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no crash")
			}
		}()
		crashing.Release(ctx, request("ps_1", "snap-1"))
	}
	crash()
	// A server that recovers the panic (net/http does) is not left with a
	// held lock: the next identical request gets as far as the charge.
	crash()

	// The next process: a new ledger on the database, a new, empty cache.
	next := sqlprivacy.New(f.db, sqlprivacy.Options{Now: f.clock.Now})
	b, err := next.Remaining(ctx, privacy.Key{Party: "guest-bank", Subject: "ps_1", Purpose: purpose})
	if err != nil || b.Remaining != 0 {
		t.Fatalf("after two crashes: %+v, %v; want both charges counted", b, err)
	}
	mem := cache.NewMemory(cache.MemoryOptions{Now: f.clock.Now})
	defer mem.Close()
	r, err := privacy.NewReleaser(privacy.ReleaserOptions{Mechanism: f.mech, Ledger: next, Cache: mem})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Release(ctx, request("ps_1", "snap-1")); !errors.Is(err, privacy.ErrBudgetExhausted) {
		t.Fatalf("release after the crashes: %v, want ErrBudgetExhausted", err)
	}
}

// TestReleaseNoNoise: noise off releases the clipped score exactly, with
// no ledger, cache or charge.
func TestReleaseNoNoise(t *testing.T) {
	m, err := privacy.NoNoise(3)
	if err != nil {
		t.Fatal(err)
	}
	r, err := privacy.NewReleaser(privacy.ReleaserOptions{Mechanism: m})
	if err != nil {
		t.Fatal(err)
	}
	for score, want := range map[float64]float64{0.7310585786300049: 0.7310585786300049, -2.999999: -2.999999, 4: 3, -1e9: -3} {
		req := request("ps_1", "snap-1")
		req.Score = score
		rel, err := r.Release(ctx, req)
		if err != nil || rel.Value != want || rel.Cached || rel.Charge.ID != "" {
			t.Fatalf("Release(%v) = %+v, %v; want exactly %v", score, rel, err, want)
		}
	}
}

// TestReleaseDisabledCache: cache.Disabled turns idempotence off, never
// the accounting: every release is charged.
func TestReleaseDisabledCache(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Refuse)
	r := f.releaser(t, func(o *privacy.ReleaserOptions) { o.Cache = cache.Disabled(f.cache) })
	for range 2 {
		if rel, err := r.Release(ctx, request("ps_1", "snap-1")); err != nil || rel.Cached {
			t.Fatalf("%+v, %v", rel, err)
		}
	}
	if _, err := r.Release(ctx, request("ps_1", "snap-1")); !errors.Is(err, privacy.ErrBudgetExhausted) {
		t.Fatalf("third uncached release: %v", err)
	}
}

func TestReleaseInvalid(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Refuse)
	r := f.releaser(t, nil)
	for name, req := range map[string]privacy.Request{
		"no party":   {Purpose: purpose, Subject: "ps_1", Score: 1},
		"no subject": {Party: "guest-bank", Purpose: purpose, Score: 1},
		"no purpose": {Party: "guest-bank", Subject: "ps_1", Score: 1},
		"NaN":        {Party: "guest-bank", Purpose: purpose, Subject: "ps_1", Score: math.NaN()},
	} {
		if _, err := r.Release(ctx, req); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if got := f.remaining(t, "guest-bank", "ps_1"); got != privacy.OneEpsilon {
		t.Fatalf("invalid requests were charged: remaining %v", got)
	}
	other := request("ps_1", "snap-1")
	other.Purpose = "marketing"
	if _, err := r.Release(ctx, other); !errors.Is(err, privacy.ErrNoPolicy) {
		t.Errorf("purpose without policy: %v, want ErrNoPolicy", err)
	}
	for name, o := range map[string]privacy.ReleaserOptions{
		"no mechanism": {Ledger: f.ledger, Cache: f.cache},
		"no ledger":    {Mechanism: f.mech, Cache: f.cache},
		"no cache":     {Mechanism: f.mech, Ledger: f.ledger},
	} {
		if _, err := privacy.NewReleaser(o); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("NewReleaser %s: %v, want ErrInvalid", name, err)
		}
	}
}

// TestReleaseWaitHonoursContext: a request waiting behind an identical
// one gives up when its context ends.
func TestReleaseWaitHonoursContext(t *testing.T) {
	f := newFixture(t, privacy.OneEpsilon, privacy.Refuse)
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	r := f.releaser(t, func(o *privacy.ReleaserOptions) { o.Random = blockingReader{started, block} })
	done := make(chan error, 1)
	go func() { _, err := r.Release(ctx, request("ps_1", "snap-1")); done <- err }()
	<-started // the first request holds the key and is drawing noise
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.Release(cctx, request("ps_1", "snap-1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting request: %v, want DeadlineExceeded", err)
	}
	close(block)
	if err := <-done; !errors.Is(err, errNoEntropy) {
		t.Fatalf("first request: %v", err)
	}
}

type blockingReader struct {
	started chan<- struct{}
	block   <-chan struct{}
}

func (b blockingReader) Read([]byte) (int, error) {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-b.block
	return 0, errNoEntropy
}
