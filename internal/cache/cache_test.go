package cache_test

import (
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
)

func TestClasses(t *testing.T) {
	want := map[string]time.Duration{
		"user_features":  time.Hour,
		"model_cache":    2 * time.Hour,
		"psi_results":    30 * time.Minute,
		"consent_tokens": 15 * time.Minute,
	}
	got := cache.Classes()
	if len(got) != len(want) {
		t.Fatalf("Classes() has %d classes, want %d", len(got), len(want))
	}
	for _, c := range got {
		if ttl, ok := want[c.Name]; !ok || ttl != c.TTL {
			t.Errorf("class %q TTL %v, want %v (known: %v)", c.Name, c.TTL, ttl, ok)
		}
	}
}

func TestDisabled(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t, cache.MemoryOptions{})
	d := cache.Disabled(m)
	uf := cache.UserFeatures()

	if err := d.Set(ctx, uf, "set-through-disabled", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if _, ok, _ := m.Get(ctx, uf, "set-through-disabled"); ok {
		t.Error("Set through Disabled reached the backend")
	}
	mustSet(t, m, uf, "k", "v")
	if _, ok, err := d.Get(ctx, uf, "k"); ok || err != nil {
		t.Errorf("Get through Disabled = %v, %v; want a miss", ok, err)
	}
	if err := d.Delete(ctx, uf, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Get(ctx, uf, "k"); ok {
		t.Error("Delete through Disabled did not reach the backend")
	}

	// Rate limits and invalidation still work.
	for want := int64(1); want <= 2; want++ {
		if n, err := d.Incr(ctx, uf, "rate", 1, 0); err != nil || n != want {
			t.Fatalf("Incr = %d, %v; want %d", n, err, want)
		}
	}
	s, err := d.Subscribe(ctx, "invalidate")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := d.Publish(ctx, "invalidate", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-s.C()); got != "k" {
		t.Errorf("received %q, want %q", got, "k")
	}
	if err := d.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Ping(ctx); err == nil {
		t.Error("Close through Disabled did not close the backend")
	}
}

func TestWithTTL(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{Now: clock.Now, SweepInterval: time.Hour})
	uf := cache.UserFeatures() // 1h by default

	if cache.WithTTL(m, 0) != cache.Cache(m) {
		t.Error("WithTTL(c, 0) should return c unchanged")
	}
	c := cache.WithTTL(m, 10*time.Second)
	mustSet(t, c, uf, "default", "x")
	if err := c.Set(ctx, uf, "explicit", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Incr(ctx, uf, "counter", 1, 0); err != nil {
		t.Fatal(err)
	}

	clock.Advance(10 * time.Second)
	for key, want := range map[string]bool{"default": false, "counter": false, "explicit": true} {
		if _, ok, _ := c.Get(ctx, uf, key); ok != want {
			t.Errorf("after 10s, Get(%q) hit = %v, want %v", key, ok, want)
		}
	}
}
