// Package cachetest is the conformance suite for cache.Cache backends: every
// backend must pass Run, the memory backend always and Redis whenever
// FEDRISK_TEST_REDIS_URL is set.
package cachetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
)

// Run runs the conformance cases in parallel subtests. newCache must return
// a fresh, empty cache for t, isolated from other calls (for a shared server,
// by a random prefix), and arrange its cleanup; Close may be called on it.
func Run(t *testing.T, newCache func(t *testing.T) cache.Cache) {
	cases := []struct {
		name string
		fn   func(t *testing.T, c cache.Cache)
	}{
		{"GetSetMiss", testGetSetMiss},
		{"EmptyValue", testEmptyValue},
		{"TTLExpiry", testTTLExpiry},
		{"Delete", testDelete},
		{"IncrConcurrent", testIncrConcurrent},
		{"IncrTTLOnCreate", testIncrTTLOnCreate},
		{"IncrNotInteger", testIncrNotInteger},
		{"ClassIsolation", testClassIsolation},
		{"LargeValue", testLargeValue},
		{"BinaryValue", testBinaryValue},
		{"InvalidClass", testInvalidClass},
		{"PubSub", testPubSub},
		{"SubscriptionClose", testSubscriptionClose},
		{"Ping", testPing},
		{"Close", testClose},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newCache(t))
		})
	}
}

// wait is how long a message may take to arrive.
const wait = 5 * time.Second

func mustGet(t *testing.T, c cache.Cache, class cache.Class, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := c.Get(t.Context(), class, key)
	if err != nil {
		t.Fatalf("Get(%s, %q): %v", class.Name, key, err)
	}
	return v, ok
}

func wantValue(t *testing.T, c cache.Cache, class cache.Class, key string, want []byte) {
	t.Helper()
	got, ok := mustGet(t, c, class, key)
	if !ok {
		t.Fatalf("Get(%s, %q) missed, want a hit", class.Name, key)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s, %q) = %q, want %q", class.Name, key, trim(got), trim(want))
	}
}

func wantMiss(t *testing.T, c cache.Cache, class cache.Class, key string) {
	t.Helper()
	if got, ok := mustGet(t, c, class, key); ok {
		t.Fatalf("Get(%s, %q) = %q, want a miss", class.Name, key, trim(got))
	}
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func mustSet(t *testing.T, c cache.Cache, class cache.Class, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(t.Context(), class, key, val, ttl); err != nil {
		t.Fatalf("Set(%s, %q): %v", class.Name, key, err)
	}
}

func mustIncr(t *testing.T, c cache.Cache, class cache.Class, key string, delta int64, ttl time.Duration) int64 {
	t.Helper()
	n, err := c.Incr(t.Context(), class, key, delta, ttl)
	if err != nil {
		t.Fatalf("Incr(%s, %q, %d): %v", class.Name, key, delta, err)
	}
	return n
}

func testGetSetMiss(t *testing.T, c cache.Cache) {
	class := cache.UserFeatures()
	wantMiss(t, c, class, "u1")
	mustSet(t, c, class, "u1", []byte("v1"), 0)
	wantValue(t, c, class, "u1", []byte("v1"))
	mustSet(t, c, class, "u1", []byte("v2"), time.Minute)
	wantValue(t, c, class, "u1", []byte("v2"))
	wantMiss(t, c, class, "u2")

	// The cache must not alias the caller's slices.
	buf := []byte("abc")
	mustSet(t, c, class, "u3", buf, 0)
	buf[0] = 'X'
	got, _ := mustGet(t, c, class, "u3")
	got[1] = 'Y'
	wantValue(t, c, class, "u3", []byte("abc"))
}

func testEmptyValue(t *testing.T, c cache.Cache) {
	class := cache.ModelCache()
	mustSet(t, c, class, "empty", []byte{}, 0)
	got, ok := mustGet(t, c, class, "empty")
	if !ok || len(got) != 0 {
		t.Fatalf("Get(empty) = %q, %v; want an empty hit", got, ok)
	}
}

func testTTLExpiry(t *testing.T, c cache.Cache) {
	short := cache.Class{Name: "short_class", TTL: time.Second}
	long := cache.UserFeatures()
	mustSet(t, c, long, "explicit", []byte("x"), time.Second) // explicit ttl beats the class's 1h
	mustSet(t, c, short, "default", []byte("x"), 0)           // class TTL applies
	mustSet(t, c, short, "override", []byte("x"), time.Hour)  // explicit ttl beats the class's 1s
	mustSet(t, c, long, "kept", []byte("x"), 0)
	wantValue(t, c, long, "explicit", []byte("x"))
	wantValue(t, c, short, "default", []byte("x"))

	time.Sleep(1300 * time.Millisecond)
	wantMiss(t, c, long, "explicit")
	wantMiss(t, c, short, "default")
	wantValue(t, c, short, "override", []byte("x"))
	wantValue(t, c, long, "kept", []byte("x"))
}

func testDelete(t *testing.T, c cache.Cache) {
	class := cache.PSIResults()
	mustSet(t, c, class, "k", []byte("v"), 0)
	mustSet(t, c, class, "other", []byte("v"), 0)
	if err := c.Delete(t.Context(), class, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMiss(t, c, class, "k")
	wantValue(t, c, class, "other", []byte("v"))
	if err := c.Delete(t.Context(), class, "never-set"); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
}

func testIncrConcurrent(t *testing.T, c cache.Cache) {
	class := cache.ConsentTokens()
	const workers, each = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := c.Incr(t.Context(), class, "ctr", 1, 0); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Incr: %v", err)
	}
	wantValue(t, c, class, "ctr", []byte(strconv.Itoa(workers*each)))
	if n := mustIncr(t, c, class, "ctr", -workers*each-5, 0); n != -5 {
		t.Fatalf("Incr by a negative delta = %d, want -5", n)
	}
	if n := mustIncr(t, c, class, "fresh", 7, 0); n != 7 {
		t.Fatalf("Incr on a new key = %d, want 7", n)
	}
}

func testIncrTTLOnCreate(t *testing.T, c cache.Cache) {
	class := cache.UserFeatures()
	if n := mustIncr(t, c, class, "rate", 1, time.Second); n != 1 {
		t.Fatalf("first Incr = %d, want 1", n)
	}
	// Later increments must neither extend nor remove the creation TTL.
	if n := mustIncr(t, c, class, "rate", 1, time.Hour); n != 2 {
		t.Fatalf("second Incr = %d, want 2", n)
	}
	short := cache.Class{Name: "short_class", TTL: time.Second}
	mustIncr(t, c, short, "by_class", 1, 0) // class TTL on create
	mustIncr(t, c, class, "kept", 1, 0)     // 1h class TTL

	time.Sleep(1300 * time.Millisecond)
	wantMiss(t, c, class, "rate")
	wantMiss(t, c, short, "by_class")
	wantValue(t, c, class, "kept", []byte("1"))
	if n := mustIncr(t, c, class, "rate", 1, time.Second); n != 1 {
		t.Fatalf("Incr after expiry = %d, want 1 (a fresh key)", n)
	}
}

func testIncrNotInteger(t *testing.T, c cache.Cache) {
	class := cache.ModelCache()
	mustSet(t, c, class, "text", []byte("not a number"), 0)
	if _, err := c.Incr(t.Context(), class, "text", 1, 0); err == nil {
		t.Fatal("Incr on a non-integer value succeeded, want an error")
	}
	wantValue(t, c, class, "text", []byte("not a number"))
}

func testClassIsolation(t *testing.T, c cache.Cache) {
	a, b := cache.UserFeatures(), cache.ModelCache()
	mustSet(t, c, a, "same", []byte("in a"), 0)
	mustSet(t, c, b, "same", []byte("in b"), 0)
	wantValue(t, c, a, "same", []byte("in a"))
	wantValue(t, c, b, "same", []byte("in b"))
	if err := c.Delete(t.Context(), a, "same"); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, c, a, "same")
	wantValue(t, c, b, "same", []byte("in b"))

	mustIncr(t, c, a, "n", 5, 0)
	if n := mustIncr(t, c, b, "n", 1, 0); n != 1 {
		t.Fatalf("Incr in class b = %d, want 1 (independent of class a)", n)
	}
	// A key must not reach into another class's namespace.
	mustSet(t, c, a, "model_cache:x", []byte("a"), 0)
	wantMiss(t, c, b, "x")
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testLargeValue(t *testing.T, c cache.Cache) {
	class := cache.ModelCache()
	val := randomBytes(t, 4<<20)
	mustSet(t, c, class, "big", val, 0)
	wantValue(t, c, class, "big", val)
}

func testBinaryValue(t *testing.T, c cache.Cache) {
	class := cache.PSIResults()
	val := make([]byte, 0, 512)
	for i := range 256 {
		val = append(val, byte(i))
	}
	val = append(val, "\r\n\x00$-1\r\n"...)
	key := "bin\x00key:\xff\r\n"
	mustSet(t, c, class, key, val, 0)
	wantValue(t, c, class, key, val)
	wantMiss(t, c, class, "bin")

	s, err := c.Subscribe(t.Context(), "binary")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := c.Publish(t.Context(), "binary", val); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, s); !bytes.Equal(got, val) {
		t.Fatalf("received %q, want %q", trim(got), trim(val))
	}
}

func testInvalidClass(t *testing.T, c cache.Cache) {
	for _, class := range []cache.Class{{}, {Name: "a:b", TTL: time.Hour}} {
		if err := c.Set(t.Context(), class, "k", []byte("v"), 0); !errors.Is(err, cache.ErrInvalidClass) {
			t.Errorf("Set with class %q: err = %v, want ErrInvalidClass", class.Name, err)
		}
		if _, _, err := c.Get(t.Context(), class, "k"); !errors.Is(err, cache.ErrInvalidClass) {
			t.Errorf("Get with class %q: err = %v, want ErrInvalidClass", class.Name, err)
		}
		if _, err := c.Incr(t.Context(), class, "k", 1, 0); !errors.Is(err, cache.ErrInvalidClass) {
			t.Errorf("Incr with class %q: err = %v, want ErrInvalidClass", class.Name, err)
		}
		if err := c.Delete(t.Context(), class, "k"); !errors.Is(err, cache.ErrInvalidClass) {
			t.Errorf("Delete with class %q: err = %v, want ErrInvalidClass", class.Name, err)
		}
	}
}

func receive(t *testing.T, s cache.Subscription) []byte {
	t.Helper()
	select {
	case m, ok := <-s.C():
		if !ok {
			t.Fatal("subscription closed, want a message")
		}
		return m
	case <-time.After(wait):
		t.Fatal("no message within", wait)
	}
	return nil
}

func subscribe(t *testing.T, c cache.Cache, channel string) cache.Subscription {
	t.Helper()
	s, err := c.Subscribe(t.Context(), channel)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t *testing.T, c cache.Cache, channel, msg string) {
	t.Helper()
	if err := c.Publish(t.Context(), channel, []byte(msg)); err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
}

func testPubSub(t *testing.T, c cache.Cache) {
	s1, s2 := subscribe(t, c, "invalidate"), subscribe(t, c, "invalidate")
	other := subscribe(t, c, "other")
	msgs := []string{"one", "two", "three"}
	for _, m := range msgs {
		publish(t, c, "invalidate", m)
	}
	publish(t, c, "other", "marker")
	for i, s := range []cache.Subscription{s1, s2} {
		for _, want := range msgs {
			if got := string(receive(t, s)); got != want {
				t.Fatalf("subscriber %d received %q, want %q", i+1, got, want)
			}
		}
	}
	// Messages on "invalidate" must not have reached "other".
	if got := string(receive(t, other)); got != "marker" {
		t.Fatalf("subscriber of another channel received %q, want only %q", got, "marker")
	}
	// Subscribers must not share the publisher's buffer.
	buf := []byte("original")
	if err := c.Publish(t.Context(), "invalidate", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXX")
	for i, s := range []cache.Subscription{s1, s2} {
		if got := string(receive(t, s)); got != "original" {
			t.Fatalf("subscriber %d received %q, want %q", i+1, got, "original")
		}
	}
	// Publishing with no subscribers is fine.
	publish(t, c, "nobody-listens", "x")
}

func testSubscriptionClose(t *testing.T, c cache.Cache) {
	closed, open := subscribe(t, c, "ch"), subscribe(t, c, "ch")
	if err := closed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := closed.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	publish(t, c, "ch", "after close")
	if got := string(receive(t, open)); got != "after close" {
		t.Fatalf("open subscriber received %q", got)
	}
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-closed.C():
			if !ok {
				return
			}
			t.Fatalf("closed subscription received %q", m)
		case <-deadline:
			t.Fatal("C() of a closed subscription was not closed")
		}
	}
}

func testPing(t *testing.T, c cache.Cache) {
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testClose(t *testing.T, c cache.Cache) {
	s := subscribe(t, c, "ch")
	mustSet(t, c, cache.UserFeatures(), "k", []byte("v"), 0)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Set(t.Context(), cache.UserFeatures(), "k", []byte("v"), 0); err == nil {
		t.Error("Set after Close succeeded")
	}
	if err := c.Ping(t.Context()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	select {
	case _, ok := <-s.C():
		if ok {
			t.Error("subscription received a message after Close")
		}
	case <-time.After(wait):
		t.Error("Close did not close the subscriptions")
	}
}
