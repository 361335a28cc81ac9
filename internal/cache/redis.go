package cache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures [NewRedis]. Zero values select the defaults.
type RedisOptions struct {
	// Prefix namespaces keys and channels. Default "fedrisk".
	Prefix string
	// PingTimeout bounds Ping. Default 1s.
	PingTimeout time.Duration
	// SubscriberBuffer is each subscription's buffer, in messages. Default 64.
	SubscriberBuffer int
	// OpTimeout bounds each command (Get, Set, Delete, Incr, Publish) when
	// the caller's deadline is later: a stalled or partitioned Redis costs
	// a cache miss of this length, never a hung request. Default 250ms.
	OpTimeout time.Duration
}

// Redis is the [Cache] backed by a Redis server.
type Redis struct {
	c    *redis.Client
	opts RedisOptions

	mu     sync.Mutex
	closed bool
	subs   map[*redisSub]struct{}
}

// NewRedis connects to the Redis server at rawURL (redis:// or rediss://,
// as accepted by redis.ParseURL) and pings it with ctx, so a wrong address
// or password fails at startup. Later outages are survived: the client
// reconnects by itself. Unless the URL sets them (dial_timeout,
// max_retries), it uses a 2s dial timeout, one dial retry and one command
// retry, so calls fail fast while Redis is down; every command is bounded
// by RedisOptions.OpTimeout (and the caller's deadline), so a stalled Redis
// costs a short wait, never a hung request.
func NewRedis(ctx context.Context, rawURL string, opts RedisOptions) (*Redis, error) {
	r, err := newRedis(rawURL, opts)
	if err != nil {
		return nil, err
	}
	if err := r.c.Ping(ctx).Err(); err != nil {
		_ = r.c.Close()
		return nil, fmt.Errorf("cache: connect to redis: %w", err)
	}
	return r, nil
}

// newRedis builds the client without contacting the server.
func newRedis(rawURL string, opts RedisOptions) (*Redis, error) {
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		// A *url.Error repeats the URL, password included: keep only its cause.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cache: parse redis URL: %w", err)
	}
	// Fail fast when Redis is down: a cache miss is cheaper than a wait.
	if ro.DialTimeout == 0 {
		ro.DialTimeout = 2 * time.Second
	}
	if ro.DialerRetries == 0 {
		ro.DialerRetries = 2
	}
	if ro.MaxRetries == 0 {
		ro.MaxRetries = 1
	}
	ro.ContextTimeoutEnabled = true
	if opts.Prefix == "" {
		opts.Prefix = "fedrisk"
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = time.Second
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = 64
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 250 * time.Millisecond
	}
	return &Redis{c: redis.NewClient(ro), opts: opts, subs: make(map[*redisSub]struct{})}, nil
}

func (r *Redis) key(class Class, key string) (string, error) {
	return storageKey(r.opts.Prefix, class, key)
}

func (r *Redis) channel(name string) string { return r.opts.Prefix + ":" + name }

// op bounds one command by OpTimeout.
func (r *Redis) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.OpTimeout)
}

// Get implements [Cache].
func (r *Redis) Get(ctx context.Context, class Class, key string) ([]byte, bool, error) {
	k, err := r.key(class, key)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	val, err := r.c.Get(ctx, k).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("cache: get %s: %w", class.Name, err)
	}
	return val, true, nil
}

// Set implements [Cache].
func (r *Redis) Set(ctx context.Context, class Class, key string, val []byte, ttl time.Duration) error {
	k, err := r.key(class, key)
	if err != nil {
		return err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.c.Set(ctx, k, val, class.ttlFor(ttl)).Err(); err != nil {
		return fmt.Errorf("cache: set %s: %w", class.Name, err)
	}
	return nil
}

// Delete implements [Cache].
func (r *Redis) Delete(ctx context.Context, class Class, key string) error {
	k, err := r.key(class, key)
	if err != nil {
		return err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.c.Del(ctx, k).Err(); err != nil {
		return fmt.Errorf("cache: delete %s: %w", class.Name, err)
	}
	return nil
}

// Incr implements [Cache] with MULTI; SET key 0 PX ttl NX; INCRBY key delta;
// EXEC, so the TTL is set only by the command that creates the key.
func (r *Redis) Incr(ctx context.Context, class Class, key string, delta int64, ttl time.Duration) (int64, error) {
	k, err := r.key(class, key)
	if err != nil {
		return 0, err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	var n *redis.IntCmd
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, k, 0, class.ttlFor(ttl))
		n = p.IncrBy(ctx, k, delta)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache: incr %s: %w", class.Name, err)
	}
	return n.Val(), nil
}

// Ping implements [Cache]; it gives up after RedisOptions.PingTimeout.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.PingTimeout)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cache: ping redis: %w", err)
	}
	return nil
}

// EvictedKeys implements [EvictedKeysReader] with INFO stats evicted_keys.
func (r *Redis) EvictedKeys(ctx context.Context) (int64, error) {
	info, err := r.c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, fmt.Errorf("cache: redis info: %w", err)
	}
	return parseInfoInt(info, "evicted_keys")
}

// parseInfoInt returns the integer field of an INFO reply.
func parseInfoInt(info, field string) (int64, error) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cache: redis info %s: %w", field, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("cache: redis info: no field %s", field)
}

// Publish implements [Cache].
func (r *Redis) Publish(ctx context.Context, channel string, msg []byte) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := r.c.Publish(ctx, r.channel(channel), msg).Err(); err != nil {
		return fmt.Errorf("cache: publish: %w", err)
	}
	return nil
}

// Subscribe implements [Cache]. It returns once Redis has confirmed the
// subscription, so later publishes reach it. After a connection loss
// go-redis resubscribes; messages published meanwhile are lost. The
// subscription implements [DropCounter].
func (r *Redis) Subscribe(ctx context.Context, channel string) (Subscription, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	ps := r.c.Subscribe(ctx, r.channel(channel))
	if _, err := ps.Receive(ctx); err != nil { // the subscribe confirmation
		_ = ps.Close()
		return nil, fmt.Errorf("cache: subscribe: %w", err)
	}
	s := &redisSub{r: r, ps: ps, ch: make(chan []byte, r.opts.SubscriberBuffer), done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = ps.Close()
		return nil, ErrClosed
	}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	go s.forward(ps.Channel())
	return s, nil
}

// Close implements [Cache]: it closes all subscriptions and the client.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	subs := r.subs
	r.subs = nil
	r.mu.Unlock()
	for s := range subs {
		_ = s.Close()
	}
	return r.c.Close()
}

type redisSub struct {
	r       *Redis
	ps      *redis.PubSub
	ch      chan []byte
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

// forward copies messages from go-redis to s.ch without ever blocking, so a
// slow subscriber cannot stall the connection's reader.
func (s *redisSub) forward(in <-chan *redis.Message) {
	defer close(s.done)
	defer close(s.ch)
	for m := range in {
		select {
		case s.ch <- []byte(m.Payload):
		default:
			s.dropped.Add(1)
		}
	}
}

func (s *redisSub) C() <-chan []byte { return s.ch }

func (s *redisSub) Dropped() uint64 { return s.dropped.Load() }

func (s *redisSub) Close() error {
	var err error
	s.once.Do(func() {
		s.r.mu.Lock()
		delete(s.r.subs, s)
		s.r.mu.Unlock()
		err = s.ps.Close()
		<-s.done
	})
	return err
}
