package cache_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/cache/cachetest"
)

func TestMemoryConformance(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Cache {
		m := cache.NewMemory(cache.MemoryOptions{})
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}

// fakeClock is a manually advanced clock for MemoryOptions.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// evictLog records OnEvict reports.
type evictLog struct {
	mu      sync.Mutex
	classes []string
	ch      chan string
}

func watchEvictions(r cache.EvictionReporter) *evictLog {
	l := &evictLog{ch: make(chan string, 100)}
	r.OnEvict(func(class string) {
		l.mu.Lock()
		l.classes = append(l.classes, class)
		l.mu.Unlock()
		l.ch <- class
	})
	return l
}

func (l *evictLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.classes)
}

func newMemory(t *testing.T, opts cache.MemoryOptions) *cache.Memory {
	t.Helper()
	m := cache.NewMemory(opts)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t, cache.MemoryOptions{MaxEntries: 2})
	evicted := watchEvictions(m)
	uf, mc := cache.UserFeatures(), cache.ModelCache()

	mustSet(t, m, uf, "a", "1")
	mustSet(t, m, mc, "b", "2")
	if _, ok, _ := m.Get(ctx, uf, "a"); !ok { // a is now more recent than b
		t.Fatal("a missing before any eviction")
	}
	mustSet(t, m, uf, "c", "3") // evicts b

	if _, ok, _ := m.Get(ctx, mc, "b"); ok {
		t.Error("b (least recently used) survived")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok, _ := m.Get(ctx, uf, k); !ok {
			t.Errorf("%s was evicted, want it kept", k)
		}
	}
	if got, want := evicted.get(), []string{"model_cache"}; !slices.Equal(got, want) {
		t.Errorf("evictions = %v, want %v", got, want)
	}

	// Overwrites, Incr on existing keys and Delete are not evictions.
	mustSet(t, m, uf, "a", "again")
	if err := m.Delete(ctx, uf, "c"); err != nil {
		t.Fatal(err)
	}
	if got := evicted.get(); len(got) != 1 {
		t.Errorf("evictions after overwrite and delete = %v, want just the first", got)
	}
}

func TestMemoryExpiryWithClock(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{Now: clock.Now, SweepInterval: time.Hour})
	evicted := watchEvictions(m)
	tokens := cache.ConsentTokens() // 15m

	mustSet(t, m, tokens, "t", "x")
	if _, err := m.Incr(ctx, tokens, "n", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - time.Nanosecond)
	if _, ok, _ := m.Get(ctx, tokens, "n"); !ok {
		t.Fatal("counter expired before its TTL")
	}
	if n, _ := m.Incr(ctx, tokens, "n", 1, time.Hour); n != 2 {
		t.Fatalf("Incr = %d, want 2", n)
	}
	clock.Advance(time.Nanosecond)
	if _, ok, _ := m.Get(ctx, tokens, "n"); ok {
		t.Fatal("counter outlived its creation TTL")
	}
	clock.Advance(14*time.Minute - time.Nanosecond)
	if _, ok, _ := m.Get(ctx, tokens, "t"); !ok {
		t.Fatal("token expired before the class TTL")
	}
	clock.Advance(time.Nanosecond)
	if _, ok, _ := m.Get(ctx, tokens, "t"); ok {
		t.Fatal("token outlived the class TTL")
	}
	if got, want := evicted.get(), []string{"consent_tokens", "consent_tokens"}; !slices.Equal(got, want) {
		t.Errorf("expirations reported = %v, want %v", got, want)
	}
}

func TestMemorySweepRemovesExpired(t *testing.T) {
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{Now: clock.Now, SweepInterval: 5 * time.Millisecond})
	evicted := watchEvictions(m)
	mustSet(t, m, cache.PSIResults(), "p", "x")
	mustSet(t, m, cache.ModelCache(), "m", "x")
	clock.Advance(time.Hour) // past psi_results' 30m, within model_cache's 2h

	// Nobody reads "p": only the sweeper can report it.
	select {
	case class := <-evicted.ch:
		if class != "psi_results" {
			t.Fatalf("sweeper evicted %q, want psi_results", class)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sweeper did not remove the expired entry")
	}
	if _, ok, _ := m.Get(t.Context(), cache.ModelCache(), "m"); !ok {
		t.Fatal("sweeper removed a live entry")
	}
}

func TestMemorySlowSubscriberDoesNotBlock(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t, cache.MemoryOptions{SubscriberBuffer: 2})
	slow, err := m.Subscribe(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for i := range 10 {
			if err := m.Publish(ctx, "ch", []byte{byte(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	if got := slow.(cache.DropCounter).Dropped(); got != 8 {
		t.Errorf("Dropped() = %d, want 8", got)
	}
	for want := range 2 {
		if got := <-slow.C(); got[0] != byte(want) {
			t.Errorf("buffered message = %d, want %d", got[0], want)
		}
	}
}

func mustSet(t *testing.T, c cache.Cache, class cache.Class, key, val string) {
	t.Helper()
	if err := c.Set(t.Context(), class, key, []byte(val), 0); err != nil {
		t.Fatal(err)
	}
}
