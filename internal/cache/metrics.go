package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Instrument returns c counting hits, misses and evictions per class, with
// the metrics registered on reg. It finds the optional [EvictionReporter]
// and [EvictedKeysReader] capabilities on c or on any cache it wraps
// (wrappers expose the wrapped cache through an Unwrap() Cache method, as
// [Disabled] and [WithTTL] do).
func Instrument(c Cache, reg prometheus.Registerer) (Cache, error) {
	newVec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"class"})
	}
	ic := instrumented{
		Cache:     c,
		hits:      newVec("cache_hits_total", "Cache lookups that found a value, by key class."),
		misses:    newVec("cache_misses_total", "Cache lookups that found no value or failed, by key class."),
		evictions: newVec("cache_evictions_total", "Entries evicted for capacity or expired, by key class."),
	}
	collectors := []prometheus.Collector{ic.hits, ic.misses, ic.evictions}
	if ek, ok := as[EvictedKeysReader](c); ok {
		collectors = append(collectors, evictedKeysCollector{
			r:       ek,
			timeout: time.Second,
			desc: prometheus.NewDesc("cache_redis_evicted_keys",
				"Keys evicted by the Redis server since it started (INFO stats evicted_keys), all classes together.",
				nil, nil),
		})
	}
	for i, col := range collectors {
		if err := reg.Register(col); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("cache: register metrics: %w", err)
		}
	}
	for _, class := range Classes() {
		ic.hits.WithLabelValues(class.Name)
		ic.misses.WithLabelValues(class.Name)
		ic.evictions.WithLabelValues(class.Name)
	}
	if er, ok := as[EvictionReporter](c); ok {
		er.OnEvict(func(class string) { ic.evictions.WithLabelValues(class).Inc() })
	}
	return ic, nil
}

type instrumented struct {
	Cache
	hits, misses, evictions *prometheus.CounterVec
}

func (ic instrumented) Unwrap() Cache { return ic.Cache }

func (ic instrumented) Get(ctx context.Context, class Class, key string) ([]byte, bool, error) {
	val, ok, err := ic.Cache.Get(ctx, class, key)
	if ok {
		ic.hits.WithLabelValues(class.Name).Inc()
	} else {
		ic.misses.WithLabelValues(class.Name).Inc()
	}
	return val, ok, err
}

// evictedKeysCollector reads the server's evicted key count at scrape time.
type evictedKeysCollector struct {
	r       EvictedKeysReader
	timeout time.Duration
	desc    *prometheus.Desc
}

func (c evictedKeysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c evictedKeysCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	n, err := c.r.EvictedKeys(ctx)
	if err != nil {
		return // Redis unreachable: report nothing rather than a stale value
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
