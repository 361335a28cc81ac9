package cache_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fedrisk/fedrisk/internal/cache"
)

// metricValues gathers reg and returns name → class label → value.
func metricValues(t *testing.T, reg *prometheus.Registry) map[string]map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]map[string]float64)
	for _, f := range families {
		out[f.GetName()] = make(map[string]float64)
		for _, m := range f.GetMetric() {
			class := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "class" {
					class = l.GetValue()
				}
			}
			out[f.GetName()][class] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestInstrument(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{MaxEntries: 2, Now: clock.Now, SweepInterval: time.Hour})
	reg := prometheus.NewRegistry()
	// Capabilities are found through wrappers.
	c, err := cache.Instrument(cache.WithTTL(m, time.Minute), reg)
	if err != nil {
		t.Fatal(err)
	}

	got := metricValues(t, reg)
	for _, name := range []string{"cache_hits_total", "cache_misses_total", "cache_evictions_total"} {
		for _, class := range cache.Classes() {
			if v, ok := got[name][class.Name]; !ok || v != 0 {
				t.Errorf("%s{class=%q} = %v (present %v), want a pre-created 0", name, class.Name, v, ok)
			}
		}
	}
	if _, ok := got["cache_redis_evicted_keys"]; ok {
		t.Error("memory cache exports cache_redis_evicted_keys")
	}

	uf, psi := cache.UserFeatures(), cache.PSIResults()
	c.Get(ctx, uf, "a") // miss
	mustSet(t, c, uf, "a", "1")
	c.Get(ctx, uf, "a") // hit
	c.Get(ctx, uf, "a") // hit
	mustSet(t, c, psi, "b", "2")
	mustSet(t, c, psi, "c", "3") // evicts user_features "a" for capacity
	clock.Advance(time.Minute)   // WithTTL: b and c expire
	c.Get(ctx, psi, "b")         // miss, expiration

	got = metricValues(t, reg)
	for _, tc := range []struct {
		name, class string
		want        float64
	}{
		{"cache_hits_total", "user_features", 2},
		{"cache_misses_total", "user_features", 1},
		{"cache_misses_total", "psi_results", 1},
		{"cache_hits_total", "psi_results", 0},
		{"cache_evictions_total", "user_features", 1},
		{"cache_evictions_total", "psi_results", 1},
		{"cache_evictions_total", "model_cache", 0},
	} {
		if v := got[tc.name][tc.class]; v != tc.want {
			t.Errorf("%s{class=%q} = %v, want %v", tc.name, tc.class, v, tc.want)
		}
	}

	if _, err := cache.Instrument(m, reg); err == nil {
		t.Error("registering the metrics twice on one registry succeeded")
	}
}
