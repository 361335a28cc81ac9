// Package featurestest is the conformance suite of the online feature
// store: every features.Backend runs the same cases (see sqlfeatures'
// tests: SQLite always, PostgreSQL with FEDRISK_TEST_POSTGRES_URL set),
// each through a features.Store on the memory cache and, with
// FEDRISK_TEST_REDIS_URL set, on Redis.
//
// The cases cover loads and reads, typed values, defaults and statuses for
// missing entities and features, max age, reloads that update values and
// delete cache entries, loads by another process that cannot reach the
// reader's cache, bad files that change nothing, unicode entity keys,
// concurrent reads during a load, and the 30,000-row demo files.
package featurestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/fedrisk/fedrisk/internal/testclock"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/features"
)

// RedisEnv names the variable holding the test Redis URL.
const RedisEnv = "FEDRISK_TEST_REDIS_URL"

// T0 is the suite's "now".
var T0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// Clock is a settable clock for Options.Now.
type Clock = testclock.Clock

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// RepoFile returns the path of a file of the repository (e.g.
// "data/default_credit_hetero_host.csv"), found from the test's working
// directory upwards.
func RepoFile(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, filepath.FromSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory: cannot find %s", rel)
		}
		dir = parent
	}
}

// TypedViewYAML defines the view "typed" with one feature of every type.
const TypedViewYAML = `
views:
  - name: typed
    description: one feature of each type
    entity: customer
    ttl: 1h
    features:
      - {name: score, type: float64, default: -1.5, description: a float}
      - {name: count, type: int64, default: 7}
      - {name: segment, type: string, default: "unknown"}
      - {name: active, type: bool, default: false}
`

// Views returns the suite's views: host_credit and guest_credit from
// internal/features/testdata/views.yaml, and typed (TypedViewYAML).
func Views(t testing.TB) *features.Registry {
	t.Helper()
	demo, err := features.LoadViews(RepoFile(t, "internal/features/testdata/views.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	typed, err := features.ParseViews([]byte(TypedViewYAML))
	if err != nil {
		t.Fatal(err)
	}
	var all []features.View
	for _, r := range []*features.Registry{demo, typed} {
		for _, v := range r.Views() {
			all = append(all, *v)
		}
	}
	reg, err := features.NewRegistry(all...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// CacheKind makes fresh, isolated caches of one backend.
type CacheKind struct {
	Name string
	New  func(t testing.TB) features.Cache
}

// Caches lists the caches available to this run: memory always, Redis
// when FEDRISK_TEST_REDIS_URL is set (each cache on a random prefix whose
// keys are deleted when the test ends).
func Caches(t testing.TB) []CacheKind {
	kinds := []CacheKind{{Name: "memory", New: func(t testing.TB) features.Cache {
		c := cache.NewMemory(cache.MemoryOptions{MaxEntries: 100000})
		t.Cleanup(func() { c.Close() })
		return c
	}}}
	if url := os.Getenv(RedisEnv); url != "" {
		kinds = append(kinds, CacheKind{Name: "redis", New: func(t testing.TB) features.Cache { return NewRedis(t, url) }})
	} else {
		t.Logf("%s not set: Redis cache cases skipped", RedisEnv)
	}
	return kinds
}

// NewRedis connects to url with a random key prefix and deletes the
// prefix's keys when t ends.
func NewRedis(t testing.TB, url string) *cache.Redis {
	t.Helper()
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "fedrisk-test-features-" + hex.EncodeToString(rnd[:])
	c, err := cache.NewRedis(context.Background(), url, cache.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		opts, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		raw := redis.NewClient(opts)
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := raw.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			raw.Del(ctx, iter.Val())
		}
	})
	return c
}

// env is one case's world: a backend, a cache, a store and its clock.
type env struct {
	backend features.Backend
	cache   features.Cache
	clock   *Clock
	reg     *prometheus.Registry
	store   *features.Store
	views   *features.Registry
}

// newStore returns another store over the env's backend with its own
// metrics, sharing the clock; c may be nil (no cache).
func (e *env) newStore(t testing.TB, views *features.Registry, c features.Cache) *features.Store {
	t.Helper()
	s, err := features.New(e.backend, views, features.Options{Cache: c, Registerer: prometheus.NewRegistry(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Run runs the suite. newBackend returns a backend over a fresh, empty,
// migrated database; every case gets its own.
func Run(t *testing.T, newBackend func(t *testing.T) features.Backend) {
	cases := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"LoadAndGet", testLoadAndGet},
		{"TypedValues", testTypedValues},
		{"DefaultsForMissing", testDefaults},
		{"MaxAge", testMaxAge},
		{"ReloadUpdatesAndInvalidates", testReload},
		{"OlderLoadKeepsNewerValues", testOlderLoad},
		{"DuplicateRowsInFile", testDuplicateRows},
		{"LoadByAnotherProcess", testOtherProcess},
		{"UnicodeEntityKeys", testUnicode},
		{"InvalidRequests", testInvalidRequests},
		{"BadFileChangesNothing", testBadFiles},
		{"TypeConflict", testTypeConflict},
		{"CorruptCacheEntry", testCorruptEntry},
		{"BatchOrderAndDuplicates", testBatchOrder},
		{"Metrics", testMetrics},
		{"ConcurrentReadsDuringLoad", testConcurrent},
		{"DemoFiles", testDemoFiles},
	}
	for _, ck := range Caches(t) {
		t.Run(ck.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					e := &env{backend: newBackend(t), cache: ck.New(t), clock: NewClock(T0), reg: prometheus.NewRegistry(), views: Views(t)}
					s, err := features.New(e.backend, e.views, features.Options{Cache: e.cache, Registerer: e.reg, Now: e.clock.Now})
					if err != nil {
						t.Fatal(err)
					}
					e.store = s
					tc.fn(t, e)
				})
			}
		})
	}
}
