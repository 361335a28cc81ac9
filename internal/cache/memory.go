package cache

import (
	"bytes"
	"container/list"
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configures [NewMemory]. Zero values select the defaults.
type MemoryOptions struct {
	// MaxEntries bounds the number of entries; beyond it the least recently
	// used entry is evicted. Default 10000.
	MaxEntries int
	// SweepInterval is how often expired entries are removed. Default 1m.
	SweepInterval time.Duration
	// SubscriberBuffer is each subscription's buffer, in messages. Default 64.
	SubscriberBuffer int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Memory is the in-process [Cache]. It is safe for concurrent use.
type Memory struct {
	opts MemoryOptions

	mu      sync.Mutex
	closed  bool
	items   map[string]*list.Element // of *memEntry
	lru     *list.List               // front is most recently used
	hooks   []func(class string)
	pending []string // classes evicted under mu, reported after unlock

	psMu     sync.RWMutex
	psClosed bool
	subs     map[string]map[*memSub]struct{}

	stop chan struct{}
	done chan struct{}
}

type memEntry struct {
	key, class string
	val        []byte
	expires    time.Time // zero: never
}

// NewMemory returns an in-process cache and starts its sweep goroutine,
// which Close stops.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Memory{
		opts:  opts,
		items: make(map[string]*list.Element),
		lru:   list.New(),
		subs:  make(map[string]map[*memSub]struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go m.sweepLoop()
	return m
}

// OnEvict implements [EvictionReporter]: f is called for every capacity
// eviction and every expiration (lazy or by the sweep), but not for Delete
// or overwrites.
func (m *Memory) OnEvict(f func(class string)) {
	m.mu.Lock()
	m.hooks = append(m.hooks, f)
	m.mu.Unlock()
}

// lock locks m, failing if it is closed.
func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// unlock unlocks m and then reports the evictions recorded meanwhile.
func (m *Memory) unlock() {
	evicted, hooks := m.pending, m.hooks
	m.pending = nil
	m.mu.Unlock()
	for _, class := range evicted {
		for _, f := range hooks {
			f(class)
		}
	}
}

func (m *Memory) removeLocked(el *list.Element, evicted bool) {
	e := m.lru.Remove(el).(*memEntry)
	delete(m.items, e.key)
	if evicted {
		m.pending = append(m.pending, e.class)
	}
}

func (e *memEntry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// lookupLocked returns the live entry for k, expiring it if it is stale.
func (m *Memory) lookupLocked(k string) *memEntry {
	el, ok := m.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*memEntry)
	if e.expired(m.opts.Now()) {
		m.removeLocked(el, true)
		return nil
	}
	m.lru.MoveToFront(el)
	return e
}

// storeLocked inserts or replaces k, evicting LRU entries beyond capacity.
func (m *Memory) storeLocked(k, class string, val []byte, ttl time.Duration) {
	var expires time.Time
	if ttl > 0 {
		expires = m.opts.Now().Add(ttl)
	}
	if el, ok := m.items[k]; ok {
		e := el.Value.(*memEntry)
		e.val, e.expires = val, expires
		m.lru.MoveToFront(el)
		return
	}
	m.items[k] = m.lru.PushFront(&memEntry{key: k, class: class, val: val, expires: expires})
	for m.lru.Len() > m.opts.MaxEntries {
		m.removeLocked(m.lru.Back(), true)
	}
}

// Get implements [Cache].
func (m *Memory) Get(_ context.Context, class Class, key string) ([]byte, bool, error) {
	k, err := storageKey("", class, key)
	if err != nil {
		return nil, false, err
	}
	if err := m.lock(); err != nil {
		return nil, false, err
	}
	defer m.unlock()
	e := m.lookupLocked(k)
	if e == nil {
		return nil, false, nil
	}
	return bytes.Clone(e.val), true, nil
}

// Set implements [Cache].
func (m *Memory) Set(_ context.Context, class Class, key string, val []byte, ttl time.Duration) error {
	k, err := storageKey("", class, key)
	if err != nil {
		return err
	}
	if val == nil {
		val = []byte{}
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.unlock()
	m.storeLocked(k, class.Name, bytes.Clone(val), class.ttlFor(ttl))
	return nil
}

// Delete implements [Cache].
func (m *Memory) Delete(_ context.Context, class Class, key string) error {
	k, err := storageKey("", class, key)
	if err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.unlock()
	if el, ok := m.items[k]; ok {
		m.removeLocked(el, false)
	}
	return nil
}

// Incr implements [Cache].
func (m *Memory) Incr(_ context.Context, class Class, key string, delta int64, ttl time.Duration) (int64, error) {
	k, err := storageKey("", class, key)
	if err != nil {
		return 0, err
	}
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.unlock()
	e := m.lookupLocked(k)
	if e == nil {
		m.storeLocked(k, class.Name, strconv.AppendInt(nil, delta, 10), class.ttlFor(ttl))
		return delta, nil
	}
	n, err := strconv.ParseInt(string(e.val), 10, 64)
	if err != nil || (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, ErrNotInteger
	}
	n += delta
	e.val = strconv.AppendInt(e.val[:0], n, 10) // Get hands out copies only
	return n, nil
}

// Ping implements [Cache]; it fails only after Close.
func (m *Memory) Ping(context.Context) error {
	if err := m.lock(); err != nil {
		return err
	}
	m.unlock()
	return nil
}

func (m *Memory) sweepLoop() {
	defer close(m.done)
	t := time.NewTicker(m.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep removes all expired entries. It walks every entry, which is cheap
// at the sizes MaxEntries allows.
func (m *Memory) sweep() {
	if m.lock() != nil {
		return
	}
	defer m.unlock()
	now := m.opts.Now()
	for el := m.lru.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*memEntry).expired(now) {
			m.removeLocked(el, true)
		}
		el = next
	}
}

// Close implements [Cache]: it stops the sweeper, drops all entries and
// closes all subscriptions.
func (m *Memory) Close() error {
	if m.lock() != nil {
		return nil
	}
	m.closed = true
	m.items, m.lru = nil, list.New()
	m.mu.Unlock()
	close(m.stop)
	<-m.done

	m.psMu.Lock()
	defer m.psMu.Unlock()
	m.psClosed = true
	for _, set := range m.subs {
		for s := range set {
			close(s.ch)
		}
	}
	m.subs = nil
	return nil
}

// Publish implements [Cache]. It never blocks: a subscriber whose buffer is
// full misses the message, which its Dropped count records.
func (m *Memory) Publish(_ context.Context, channel string, msg []byte) error {
	m.psMu.RLock()
	defer m.psMu.RUnlock()
	if m.psClosed {
		return ErrClosed
	}
	for s := range m.subs[channel] {
		select {
		case s.ch <- bytes.Clone(msg):
		default:
			s.dropped.Add(1)
		}
	}
	return nil
}

// Subscribe implements [Cache]. The subscription implements [DropCounter].
func (m *Memory) Subscribe(_ context.Context, channel string) (Subscription, error) {
	m.psMu.Lock()
	defer m.psMu.Unlock()
	if m.psClosed {
		return nil, ErrClosed
	}
	s := &memSub{m: m, channel: channel, ch: make(chan []byte, m.opts.SubscriberBuffer)}
	if m.subs[channel] == nil {
		m.subs[channel] = make(map[*memSub]struct{})
	}
	m.subs[channel][s] = struct{}{}
	return s, nil
}

type memSub struct {
	m       *Memory
	channel string
	ch      chan []byte
	dropped atomic.Uint64
}

func (s *memSub) C() <-chan []byte { return s.ch }

func (s *memSub) Dropped() uint64 { return s.dropped.Load() }

func (s *memSub) Close() error {
	s.m.psMu.Lock()
	defer s.m.psMu.Unlock()
	set := s.m.subs[s.channel]
	if _, ok := set[s]; ok {
		delete(set, s)
		if len(set) == 0 {
			delete(s.m.subs, s.channel)
		}
		close(s.ch)
	}
	return nil
}
