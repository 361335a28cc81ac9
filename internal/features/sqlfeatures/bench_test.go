package sqlfeatures_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featurestest"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// benchStore loads the 30,000 rows of the host demo file into host_credit
// and returns a store over it (c may be nil: no cache).
func benchStore(b *testing.B, be sqldbtest.Backend, c features.Cache) *features.Store {
	b.Helper()
	s, err := features.New(sqlfeatures.New(be.Open(b, true)), featurestest.Views(b), features.Options{Cache: c})
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(featurestest.RepoFile(b, "data/default_credit_hetero_host.csv"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := s.Load(context.Background(), "host_credit", f, features.LoadOptions{}); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchGet reads one entity's 10 features per op, cycling over 1,000 ids.
func benchGet(b *testing.B, s *features.Store) {
	ctx := context.Background()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	for _, id := range ids { // warm the cache, if any
		if _, err := s.Get(ctx, "host_credit", id, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		v, err := s.Get(ctx, "host_credit", ids[i%len(ids)], nil)
		if err != nil || !v.Present[0] {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetOnlineFeaturesCached: one entity, 10 features, served from
// the cache (memory; Redis with FEDRISK_TEST_REDIS_URL set).
func BenchmarkGetOnlineFeaturesCached(b *testing.B) {
	for _, ck := range featurestest.Caches(b) {
		b.Run(ck.Name, func(b *testing.B) {
			benchGet(b, benchStore(b, sqldbtest.Backends(b)[0], ck.New(b)))
		})
	}
}

// BenchmarkGetOnlineFeaturesDB: one entity, 10 features, read from the
// database every time (no cache).
func BenchmarkGetOnlineFeaturesDB(b *testing.B) {
	for _, be := range sqldbtest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) { benchGet(b, benchStore(b, be, nil)) })
	}
}

// BenchmarkLoadHostFile loads the 30,000 x 10 host demo file per op.
func BenchmarkLoadHostFile(b *testing.B) {
	for _, be := range sqldbtest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			s, err := features.New(sqlfeatures.New(be.Open(b, true)), featurestest.Views(b), features.Options{Cache: cache.NewMemory(cache.MemoryOptions{MaxEntries: 100000})})
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(featurestest.RepoFile(b, "data/default_credit_hetero_host.csv"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			for b.Loop() {
				f.Seek(0, 0)
				if _, err := s.Load(context.Background(), "host_credit", f, features.LoadOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
