package features

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
)

// StoredValue is one feature value of one entity as a Backend keeps it.
type StoredValue struct {
	Feature   string
	Value     string    // canonical text (Value.String)
	EventTime time.Time // microsecond precision
}

// Row is the values of one entity written together; a feature appears at
// most once in a row.
type Row struct {
	Entity string
	Values []StoredValue
}

// Batch is what one transaction of a load writes.
type Batch struct {
	View string
	// Types are the view's feature types, recorded so that a later load
	// with a changed definition is refused (ErrTypeConflict).
	Types    map[string]ValueType
	Rows     []Row // at most one row per entity
	LoadedAt time.Time
}

// WriteResult is what a Backend.Write did.
type WriteResult struct {
	Generation int64 // the view's generation after the write
	Written    int   // values inserted or replaced
	Stale      int   // values skipped because the stored one has a later event time
}

// ViewState is what a backend knows about a view.
type ViewState struct {
	Generation int64                // 0: never loaded
	Types      map[string]ValueType // every feature ever loaded, with its type
	UpdatedAt  time.Time
}

// Backend stores feature values (features/sqlfeatures).
type Backend interface {
	// Read returns the stored values of those entities of view that have
	// any, and the view's generation as of the same read (0 if the view was
	// never loaded).
	Read(ctx context.Context, view string, entities []string) (map[string][]StoredValue, int64, error)
	// Write upserts a batch in one transaction and advances the view's
	// generation. A value replaces the stored one unless the stored one has
	// a later event time, so replaying an old file never undoes a newer load.
	Write(ctx context.Context, b Batch) (WriteResult, error)
	// State returns the view's generation and recorded feature types.
	State(ctx context.Context, view string) (ViewState, error)
}

// Cache is the part of the node cache the store uses (class user_features).
type Cache interface {
	Get(ctx context.Context, class cache.Class, key string) ([]byte, bool, error)
	Set(ctx context.Context, class cache.Class, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, class cache.Class, key string) error
}

// Status says where a value of a Vector comes from, with Feast's names.
type Status uint8

// Statuses.
const (
	StatusPresent       Status = iota + 1 // the stored value
	StatusNotFound                        // no stored value: the feature's default
	StatusOutsideMaxAge                   // the stored value is older than the view's TTL: the default
)

func (s Status) String() string {
	switch s {
	case StatusPresent:
		return "PRESENT"
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusOutsideMaxAge:
		return "OUTSIDE_MAX_AGE"
	}
	return "INVALID"
}

// MarshalText writes the Feast name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Vector is one entity's values of the requested features, in request
// order. A feature without a usable value holds its view's default, with
// Present false and the reason in Statuses.
type Vector struct {
	Features []string
	Values   []Value
	Present  []bool
	Statuses []Status
	// EventTimes are the values' event times: zero for NOT_FOUND, the
	// stored (too old) time for OUTSIDE_MAX_AGE.
	EventTimes []time.Time
}

// Float64s returns the values as float64 (bools as 0/1), the input of a
// model. It fails on string features.
func (v Vector) Float64s() ([]float64, error) {
	out := make([]float64, len(v.Values))
	for i, x := range v.Values {
		f, ok := x.AsFloat64()
		if !ok {
			return nil, fmt.Errorf("feature %s is a %s, not a number", v.Features[i], x.Type())
		}
		out[i] = f
	}
	return out, nil
}

// Options tune a Store. Zero values select the defaults.
type Options struct {
	// Cache caches each entity's values per view (class user_features, its
	// TTL); nil reads the backend every time.
	Cache Cache
	// Registerer takes the store's metrics; nil keeps them unexported.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	Now        func() time.Time
	// GenerationCheck is how often the store asks the backend for a view's
	// generation, which bounds how long a cached entry can outlive a load
	// that did not reach this cache (another process with its own memory
	// cache) or that raced a reader. Default 1 s.
	GenerationCheck time.Duration
	// Parallelism bounds the cache round trips in flight for one batch
	// read or load batch. Default 8.
	Parallelism int
}

// MaxReadBatch is how many entities one backend read asks for.
const MaxReadBatch = 500

// Store is a party's online feature store: typed reads through the cache,
// CSV loads into the backend. It is safe for concurrent use.
type Store struct {
	backend Backend
	views   *Registry
	cache   Cache
	opts    Options
	log     *slog.Logger
	m       *metrics
	gens    map[string]*genState
	warned  [2]atomic.Int64 // unix nanos of the last cache/refresh warning
}

type genState struct {
	gen        atomic.Int64
	checked    atomic.Int64 // unix nanos of the last refresh; 0: never
	refreshing atomic.Bool
}

// New returns a store of views over backend.
func New(backend Backend, views *Registry, opts Options) (*Store, error) {
	if backend == nil || views == nil {
		return nil, errors.New("features: a backend and views are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GenerationCheck <= 0 {
		opts.GenerationCheck = time.Second
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = 8
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg, views)
	if err != nil {
		return nil, err
	}
	s := &Store{backend: backend, views: views, cache: opts.Cache, opts: opts,
		log: opts.Log.With("component", "features"), m: m, gens: make(map[string]*genState)}
	for _, v := range views.Views() {
		s.gens[v.Name] = &genState{}
	}
	return s, nil
}

// Views returns the store's view definitions.
func (s *Store) Views() *Registry { return s.views }

// Get returns entity's values of features in view (all of the view's
// features, in definition order, when features is empty).
func (s *Store) Get(ctx context.Context, view, entity string, features []string) (Vector, error) {
	vs, err := s.GetBatch(ctx, view, []string{entity}, features)
	if err != nil {
		return Vector{}, err
	}
	return vs[0], nil
}

// GetBatch is Get for several entities: one Vector per entity, in order
// (an entity may repeat). It reads each distinct entity once, misses in
// backend reads of up to MaxReadBatch entities.
func (s *Store) GetBatch(ctx context.Context, view string, entities []string, features []string) ([]Vector, error) {
	v, ok := s.views.View(view)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownView, view)
	}
	idx, names, err := resolve(v, features)
	if err != nil {
		return nil, err
	}
	pos := make(map[string]int, len(entities))
	uniq := make([]string, 0, len(entities))
	for i, e := range entities {
		if err := ValidateEntity(e); err != nil {
			return nil, fmt.Errorf("entity %d: %w", i, err)
		}
		if _, seen := pos[e]; !seen {
			pos[e] = len(uniq)
			uniq = append(uniq, e)
		}
	}
	recs, err := s.lookup(ctx, v, uniq)
	if err != nil {
		s.m.reads.WithLabelValues(v.Name, "error").Add(float64(len(uniq)))
		return nil, err
	}
	now := s.opts.Now()
	built := make([]Vector, len(uniq))
	for i, rec := range recs {
		if built[i], err = buildVector(v, idx, names, rec.values, now); err != nil {
			s.m.reads.WithLabelValues(v.Name, "error").Add(float64(len(uniq)))
			return nil, err
		}
	}
	for _, rec := range recs {
		switch {
		case len(rec.values) == 0:
			s.m.notFound[v.Name].Inc()
		case rec.cached:
			s.m.hit[v.Name].Inc()
		default:
			s.m.miss[v.Name].Inc()
		}
	}
	out := make([]Vector, len(entities))
	for i, e := range entities {
		out[i] = built[pos[e]]
	}
	return out, nil
}

// resolve maps requested feature names to positions in v.
func resolve(v *View, features []string) ([]int, []string, error) {
	if len(features) == 0 {
		idx := make([]int, len(v.Features))
		for i := range idx {
			idx[i] = i
		}
		return idx, v.FeatureNames(), nil
	}
	idx := make([]int, len(features))
	for i, name := range features {
		_, j, ok := v.Feature(name)
		if !ok {
			return nil, nil, fmt.Errorf("%w %q in view %q", ErrUnknownFeature, name, v.Name)
		}
		idx[i] = j
	}
	return idx, append([]string(nil), features...), nil
}

func buildVector(v *View, idx []int, names []string, stored []StoredValue, now time.Time) (Vector, error) {
	n := len(idx)
	vec := Vector{Features: names, Values: make([]Value, n), Present: make([]bool, n),
		Statuses: make([]Status, n), EventTimes: make([]time.Time, n)}
	var byPos []*StoredValue
	if len(stored) > 0 {
		byPos = make([]*StoredValue, len(v.Features))
		for i := range stored {
			if _, j, ok := v.Feature(stored[i].Feature); ok {
				byPos[j] = &stored[i]
			}
		}
	}
	for i, j := range idx {
		f := v.Features[j]
		var sv *StoredValue
		if byPos != nil {
			sv = byPos[j]
		}
		switch {
		case sv == nil:
			vec.Values[i], vec.Statuses[i] = f.Default, StatusNotFound
		case v.TTL > 0 && now.Sub(sv.EventTime) > v.TTL:
			vec.Values[i], vec.Statuses[i], vec.EventTimes[i] = f.Default, StatusOutsideMaxAge, sv.EventTime
		default:
			val, err := ParseValue(f.Type, sv.Value)
			if err != nil {
				return Vector{}, fmt.Errorf("%w: %s:%s is not a %s (was the view's definition changed after the load?)", ErrStoredValue, v.Name, f.Name, f.Type)
			}
			vec.Values[i], vec.Statuses[i], vec.EventTimes[i], vec.Present[i] = val, StatusPresent, sv.EventTime, true
		}
	}
	return vec, nil
}

type record struct {
	values []StoredValue
	cached bool
}

// lookup reads entities' values: from the cache when it holds an entry at
// least as new as the view's generation, else from the backend (and then
// caches them, "no values" included).
func (s *Store) lookup(ctx context.Context, v *View, entities []string) ([]record, error) {
	recs := make([]record, len(entities))
	miss := make([]int, 0, len(entities))
	class := cache.UserFeatures()
	if s.cache != nil {
		cur := s.generation(ctx, v.Name)
		hit := make([]bool, len(entities))
		s.parallel(len(entities), func(i int) {
			b, ok, err := s.cache.Get(ctx, class, CacheKey(v.Name, entities[i]))
			if err != nil {
				s.warn(0, "feature cache read failed; reading the database", err)
				return
			}
			if !ok {
				return
			}
			gen, vals, err := decodeEntry(b)
			if err != nil || gen < cur {
				return // malformed or older than a load: read again and overwrite
			}
			recs[i], hit[i] = record{values: vals, cached: true}, true
		})
		for i, h := range hit {
			if !h {
				miss = append(miss, i)
			}
		}
	} else {
		for i := range entities {
			miss = append(miss, i)
		}
	}
	for start := 0; start < len(miss); start += MaxReadBatch {
		chunk := miss[start:min(start+MaxReadBatch, len(miss))]
		keys := make([]string, len(chunk))
		for k, i := range chunk {
			keys[k] = entities[i]
		}
		got, gen, err := s.backend.Read(ctx, v.Name, keys)
		if err != nil {
			return nil, fmt.Errorf("read view %s: %w", v.Name, err)
		}
		s.observe(v.Name, gen)
		for k, i := range chunk {
			recs[i] = record{values: got[keys[k]]}
		}
		if s.cache == nil {
			continue
		}
		s.parallel(len(chunk), func(k int) {
			entry := encodeEntry(gen, got[keys[k]])
			if err := s.cache.Set(ctx, class, CacheKey(v.Name, keys[k]), entry, 0); err != nil {
				s.warn(0, "feature cache write failed", err)
			}
		})
	}
	return recs, nil
}

// generation returns the view's generation as this store knows it,
// asking the backend when the last answer is older than GenerationCheck.
// One caller refreshes while the others use the value they have; if the
// backend cannot answer, cached entries keep being served.
func (s *Store) generation(ctx context.Context, view string) int64 {
	st := s.gens[view]
	now := s.opts.Now().UnixNano()
	if now-st.checked.Load() >= int64(s.opts.GenerationCheck) && st.refreshing.CompareAndSwap(false, true) {
		state, err := s.backend.State(ctx, view)
		st.checked.Store(now)
		st.refreshing.Store(false)
		if err != nil {
			s.warn(1, "feature view generation check failed; serving cached values", err)
		} else {
			s.observe(view, state.Generation)
		}
	}
	return st.gen.Load()
}

// observe raises the known generation of view to gen.
func (s *Store) observe(view string, gen int64) {
	st := s.gens[view]
	for {
		cur := st.gen.Load()
		if gen <= cur || st.gen.CompareAndSwap(cur, gen) {
			return
		}
	}
}

// parallel runs fn(0..n-1) on up to Parallelism goroutines.
func (s *Store) parallel(n int, fn func(i int)) {
	if n <= 2 || s.opts.Parallelism == 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, s.opts.Parallelism) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// warn logs a cache or backend problem at most every 10 s per kind, so an
// outage does not flood the log. Errors of the cache and backend never hold
// keys or values.
func (s *Store) warn(kind int, msg string, err error) {
	now := time.Now().UnixNano()
	last := s.warned[kind].Load()
	if now-last < int64(10*time.Second) || !s.warned[kind].CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, "err", err)
}

type metrics struct {
	reads               *prometheus.CounterVec
	hit, miss, notFound map[string]prometheus.Counter
}

// newMetrics registers feature_store_reads_total{view,status}: one count
// per distinct entity looked up in a view. status is hit (values found in
// the cache), miss (values read from the database), not_found (the entity
// has no values in the view) or error. view takes only the names of
// defined views, so the label set is bounded.
func newMetrics(reg prometheus.Registerer, views *Registry) (*metrics, error) {
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feature_store_reads_total",
			Help: "Entity lookups of the online feature store, by feature view and status (hit, miss, not_found, error).",
		}, []string{"view", "status"}),
		hit: map[string]prometheus.Counter{}, miss: map[string]prometheus.Counter{}, notFound: map[string]prometheus.Counter{},
	}
	if err := reg.Register(m.reads); err != nil {
		return nil, fmt.Errorf("features: register metrics: %w", err)
	}
	for _, v := range views.Views() {
		m.hit[v.Name] = m.reads.WithLabelValues(v.Name, "hit")
		m.miss[v.Name] = m.reads.WithLabelValues(v.Name, "miss")
		m.notFound[v.Name] = m.reads.WithLabelValues(v.Name, "not_found")
		m.reads.WithLabelValues(v.Name, "error")
	}
	return m, nil
}
