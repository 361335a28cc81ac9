package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Class is a runbook key class with its default TTL.
type Class struct {
	Name string
	TTL  time.Duration
}

// UserFeatures is the class of per-user feature vectors.
func UserFeatures() Class { return Class{Name: "user_features", TTL: time.Hour} }

// ModelCache is the class of model artefacts.
func ModelCache() Class { return Class{Name: "model_cache", TTL: 2 * time.Hour} }

// PSIResults is the class of private set intersection results.
func PSIResults() Class { return Class{Name: "psi_results", TTL: 30 * time.Minute} }

// ConsentTokens is the class of consent tokens.
func ConsentTokens() Class { return Class{Name: "consent_tokens", TTL: 15 * time.Minute} }

// Classes lists the runbook classes.
func Classes() []Class {
	return []Class{UserFeatures(), ModelCache(), PSIResults(), ConsentTokens()}
}

// ttlFor resolves the TTL of a write: ttl if positive, else the class TTL,
// else 0 (no expiry).
func (c Class) ttlFor(ttl time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	return max(c.TTL, 0)
}

// Cache is a key/value cache with atomic counters and pub/sub.
type Cache interface {
	// Get returns the value of key, or ok == false if it is absent or expired.
	Get(ctx context.Context, class Class, key string) (val []byte, ok bool, err error)
	// Set stores val; ttl <= 0 means class.TTL.
	Set(ctx context.Context, class Class, key string, val []byte, ttl time.Duration) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, class Class, key string) error
	// Incr atomically adds delta to the decimal integer stored at key and
	// returns the new value. A missing key counts as 0 and is created with
	// ttl (ttl <= 0 means class.TTL); an existing key keeps its expiry.
	Incr(ctx context.Context, class Class, key string, delta int64, ttl time.Duration) (int64, error)
	// Publish sends msg to every current subscriber of channel.
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe subscribes to channel. ctx bounds only the subscribe call;
	// the subscription lasts until its Close or the cache's Close.
	Subscribe(ctx context.Context, channel string) (Subscription, error)
	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases resources and closes all subscriptions. It is idempotent.
	Close() error
}

// Subscription receives the messages published on one channel.
type Subscription interface {
	// C delivers messages; it is closed when the subscription ends.
	C() <-chan []byte
	// Close ends the subscription. It is idempotent.
	Close() error
}

// DropCounter is implemented by subscriptions that drop messages when their
// buffer is full instead of blocking publishers.
type DropCounter interface {
	// Dropped returns how many messages were dropped so far.
	Dropped() uint64
}

// EvictionReporter is implemented by backends that can report evictions
// (capacity evictions and expirations) per class.
type EvictionReporter interface {
	// OnEvict registers f to be called with the class name of every evicted
	// entry. f must be fast and must not call the cache.
	OnEvict(f func(class string))
}

// EvictedKeysReader is implemented by backends that can report the total
// number of keys the server evicted, without a class breakdown.
type EvictedKeysReader interface {
	EvictedKeys(ctx context.Context) (int64, error)
}

// Sentinel errors.
var (
	ErrClosed       = errors.New("cache: closed")
	ErrInvalidClass = errors.New("cache: invalid class name")
	ErrNotInteger   = errors.New("cache: value is not an integer or out of range")
)

// storageKey namespaces key by prefix and class. Class names must be
// non-empty and free of ':' so that namespaces cannot overlap.
func storageKey(prefix string, class Class, key string) (string, error) {
	if class.Name == "" || strings.Contains(class.Name, ":") {
		return "", fmt.Errorf("%w: %q", ErrInvalidClass, class.Name)
	}
	if prefix == "" {
		return class.Name + ":" + key, nil
	}
	return prefix + ":" + class.Name + ":" + key, nil
}

// as finds a T in c or in the caches it wraps (through Unwrap() Cache).
func as[T any](c Cache) (T, bool) {
	for c != nil {
		if t, ok := c.(T); ok {
			return t, true
		}
		u, ok := c.(interface{ Unwrap() Cache })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	var zero T
	return zero, false
}

// Disabled returns c with caching turned off (CACHE_ENABLED=false): Get
// always misses and Set is a no-op. Delete, Incr, Publish, Subscribe, Ping
// and Close pass through.
func Disabled(c Cache) Cache { return disabled{c} }

type disabled struct{ Cache }

func (d disabled) Unwrap() Cache { return d.Cache }

func (disabled) Get(context.Context, Class, string) ([]byte, bool, error) { return nil, false, nil }

func (disabled) Set(context.Context, Class, string, []byte, time.Duration) error { return nil }

// WithTTL returns c with every class's default TTL replaced by ttl
// (CACHE_TTL). Explicit ttl arguments still win. If ttl <= 0 it returns c.
func WithTTL(c Cache, ttl time.Duration) Cache {
	if ttl <= 0 {
		return c
	}
	return ttlOverride{c, ttl}
}

type ttlOverride struct {
	Cache
	ttl time.Duration
}

func (w ttlOverride) Unwrap() Cache { return w.Cache }

func (w ttlOverride) Set(ctx context.Context, class Class, key string, val []byte, ttl time.Duration) error {
	class.TTL = w.ttl
	return w.Cache.Set(ctx, class, key, val, ttl)
}

func (w ttlOverride) Incr(ctx context.Context, class Class, key string, delta int64, ttl time.Duration) (int64, error) {
	class.TTL = w.ttl
	return w.Cache.Incr(ctx, class, key, delta, ttl)
}
