// Package registrytest is the conformance suite of the model registry:
// every registry.Store runs the same cases through a registry.Registry (see
// sqlregistry's tests: SQLite always, PostgreSQL with
// FEDRISK_TEST_POSTGRES_URL set), on the memory cache and, with
// FEDRISK_TEST_REDIS_URL set, on Redis.
//
// The cases cover version numbering (also under concurrency), registration
// (idempotent, conflicting, invalid — which stores nothing), resolving
// versions and labels, promotion and rollback (also concurrent promotions,
// and a promotion seen at once by another replica), the label history,
// listings, and the caches (shared parsed halves, a second replica served
// from the node cache, a corrupted cache entry ignored).
package registrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/fedrisk/fedrisk/internal/testclock"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// RedisEnv names the variable holding the test Redis URL.
const RedisEnv = "FEDRISK_TEST_REDIS_URL"

// T0 is the suite's "now".
var T0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// GuestHalf returns the exported guest half of a two-feature model.
func GuestHalf(t testing.TB, modelID, version string, bias float64) []byte {
	t.Helper()
	m := &hetero.GuestModel{
		Format: hetero.GuestFormat, ModelID: modelID, Version: version,
		Features: []string{"x0", "x1"}, Weights: []float64{0.5, -0.25}, Bias: bias,
		Standardisation: dataset.Standardisation{Means: []float64{1, 2}, Stds: []float64{1, 4}},
		Hosts:           []hetero.HostRef{{Name: "telecom", Index: 0, Features: 1}},
	}
	b, err := m.Export()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// HostHalf returns the exported host half of a one-feature model.
func HostHalf(t testing.TB, modelID, version string, weight float64) []byte {
	t.Helper()
	m := &hetero.HostModel{
		Format: hetero.HostFormat, ModelID: modelID, Version: version,
		Features: []string{"y0"}, Weights: []float64{weight},
		Standardisation: dataset.Standardisation{Means: []float64{0}, Stds: []float64{2}},
		TrainedAt:       T0,
	}
	b, err := m.Export()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Clock is a settable clock for Options.Now.
type Clock = testclock.Clock

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// CacheKind makes fresh, isolated node caches of one backend.
type CacheKind struct {
	Name string
	New  func(t testing.TB) cache.Cache
}

// Caches lists the caches available to this run: memory always, Redis
// when FEDRISK_TEST_REDIS_URL is set (each on a random prefix whose keys
// are deleted when the test ends).
func Caches(t testing.TB) []CacheKind {
	kinds := []CacheKind{{Name: "memory", New: func(t testing.TB) cache.Cache {
		c := cache.NewMemory(cache.MemoryOptions{})
		t.Cleanup(func() { c.Close() })
		return c
	}}}
	if url := os.Getenv(RedisEnv); url != "" {
		kinds = append(kinds, CacheKind{Name: "redis", New: func(t testing.TB) cache.Cache { return newRedis(t, url) }})
	} else {
		t.Logf("%s not set: Redis cache cases skipped", RedisEnv)
	}
	return kinds
}

func newRedis(t testing.TB, url string) cache.Cache {
	t.Helper()
	prefix := "fedrisk-test-registry-" + randomHex(t)
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

func randomHex(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// NewModelID returns a model id no other case uses, so cases can share a
// store.
func NewModelID(t testing.TB) string { return "m-" + randomHex(t) }

// env is one case's world.
type env struct {
	store registry.Store
	cache cache.Cache
	clock *Clock
	reg   *registry.Registry
	ctx   context.Context
}

// replica returns another Registry over the same store and node cache, as
// another serving process would have.
func (e *env) replica() *registry.Registry {
	return registry.New(e.store, e.cache, registry.Options{Now: e.clock.Now})
}

// Run runs every case on stores from newStore (which may return the same
// store every time: cases use model ids of their own).
func Run(t *testing.T, newStore func(t *testing.T) registry.Store) {
	for _, ck := range Caches(t) {
		t.Run(ck.Name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					e := &env{store: newStore(t), cache: ck.New(t), clock: NewClock(T0), ctx: context.Background()}
					e.reg = e.replica()
					c.fn(t, e)
				})
			}
		})
	}
}
