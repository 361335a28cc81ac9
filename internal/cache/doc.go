// Package cache is fedrisk's small key/value cache with pub/sub, used for
// feature lookups, model artefacts, PSI results, consent tokens, rate limits
// and cross-node invalidation.
//
// # Classes
//
// Every key belongs to a [Class], a key class from the operations runbook
// with its default TTL: [UserFeatures] (1h), [ModelCache] (2h),
// [PSIResults] (30m) and [ConsentTokens] (15m). A class namespaces its keys
// in storage as "<prefix>:<class>:<key>", so the same key in two classes
// never collides, and supplies the TTL whenever a caller passes ttl <= 0.
// If both are zero the entry does not expire. [WithTTL] implements
// CACHE_TTL: it replaces every class's default TTL, while an explicit ttl
// argument still wins.
//
// # Backends
//
// [Memory] is in-process: a map plus an LRU list bounded by
// MemoryOptions.MaxEntries, with lazy expiry on access and a periodic sweep
// goroutine that Close stops. Its pub/sub delivers only within the process.
//
// [Redis] uses github.com/redis/go-redis/v9. The prefix (RedisOptions.Prefix,
// default "fedrisk") also namespaces pub/sub channels, so several nodes or
// test runs can share one Redis. Incr is a MULTI/EXEC of
// "SET key 0 PX ttl NX" and "INCRBY", so the TTL is set exactly when the key
// is created. Ping uses a short timeout so readiness checks fail promptly;
// go-redis reconnects by itself when Redis comes back, and its PubSub
// resubscribes on the new connection.
//
// Subscriptions on both backends deliver to every subscriber, including
// subscribers in the same process, through a buffered channel. A subscriber
// that does not keep up never blocks publishers: when its buffer is full the
// message is dropped for that subscriber and counted (see [DropCounter]).
// Pub/sub is therefore for hints such as invalidation, not for data that
// must arrive.
//
// # Disabled
//
// [Disabled] implements CACHE_ENABLED=false: Get always misses and Set does
// nothing, but Delete, Incr, Publish, Subscribe and Ping still reach the
// backend, because rate limits and invalidation are not caching.
//
// # Metrics
//
// [Instrument] counts cache_hits_total{class}, cache_misses_total{class}
// (a failed Get counts as a miss: the caller goes to the source) and
// cache_evictions_total{class}, pre-created at zero for every runbook class.
// Evictions come from backends that implement [EvictionReporter]: the memory
// backend reports capacity evictions and expirations per class. Redis does
// not tell which class its evicted keys belonged to, so for a backend that
// implements [EvictedKeysReader] Instrument instead exports the server-wide
// INFO stats evicted_keys as the gauge cache_redis_evicted_keys, read at
// scrape time with a short timeout and omitted when Redis cannot be reached.
// It is a gauge, not a counter, so the name stays the same in every
// exposition format; it resets when Redis restarts.
//
// Errors never contain keys or values, which may be personal identifiers.
package cache
