package cache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/cache/cachetest"
)

// redisURL returns FEDRISK_TEST_REDIS_URL or skips t.
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("FEDRISK_TEST_REDIS_URL")
	if u == "" {
		t.Skip("FEDRISK_TEST_REDIS_URL is not set; set it (e.g. redis://127.0.0.1:6379/0) to run the Redis tests")
	}
	return u
}

func randomPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "fedrisk-test-" + hex.EncodeToString(b)
}

// newTestRedis connects with a random prefix and deletes the prefix's keys
// when t ends.
func newTestRedis(t *testing.T, url string) *cache.Redis {
	t.Helper()
	prefix := randomPrefix(t)
	c, err := cache.NewRedis(t.Context(), url, cache.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Error(err)
			return
		}
		raw := redis.NewClient(opts)
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := raw.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := raw.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

func TestRedisConformance(t *testing.T) {
	url := redisURL(t)
	cachetest.Run(t, func(t *testing.T) cache.Cache { return newTestRedis(t, url) })
}

func TestRedisPrefixIsolation(t *testing.T) {
	url := redisURL(t)
	ctx := t.Context()
	a, b := newTestRedis(t, url), newTestRedis(t, url)
	uf := cache.UserFeatures()
	mustSet(t, a, uf, "k", "from a")
	if _, ok, err := b.Get(ctx, uf, "k"); ok || err != nil {
		t.Errorf("node b sees node a's key (ok=%v, err=%v)", ok, err)
	}
	sb, err := b.Subscribe(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := a.Publish(ctx, "ch", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "ch", []byte("from b")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-sb.C()); got != "from b" {
		t.Errorf("node b received %q, want only its own prefix's messages", got)
	}
}

func TestRedisEvictedKeysMetric(t *testing.T) {
	url := redisURL(t)
	c := newTestRedis(t, url)
	reg := prometheus.NewRegistry()
	if _, err := cache.Instrument(cache.Disabled(c), reg); err != nil {
		t.Fatal(err)
	}
	got := metricValues(t, reg)
	v, ok := got["cache_redis_evicted_keys"][""]
	if !ok {
		t.Fatalf("cache_redis_evicted_keys missing; have %v", got)
	}
	want, err := c.EvictedKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v < 0 || v > float64(want) { // the server may evict between the two reads
		t.Errorf("cache_redis_evicted_keys = %v, want <= %d", v, want)
	}
	if _, ok := got["cache_evictions_total"]["user_features"]; !ok {
		t.Error("cache_evictions_total{class=user_features} missing")
	}

	// With Redis unreachable the collector reports nothing, and fails nothing.
	_ = c.Close()
	start := time.Now()
	if _, ok := metricValues(t, reg)["cache_redis_evicted_keys"]; ok {
		t.Error("cache_redis_evicted_keys reported with the client closed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v with Redis unreachable", d)
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestNewRedisUnreachable(t *testing.T) {
	url := "redis://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/0"
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if c, err := cache.NewRedis(ctx, url, cache.RedisOptions{}); err == nil {
		c.Close()
		t.Fatal("NewRedis succeeded with nothing listening")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("NewRedis took %v to fail, want under 2s", d)
	}
}

func TestNewRedisBadURL(t *testing.T) {
	for _, url := range []string{
		"http://127.0.0.1:6379",
		"redis://user:s3cr3t@[::1",
		"redis://:s3cr3t@127.0.0.1:6379/notanumber",
	} {
		_, err := cache.NewRedis(t.Context(), url, cache.RedisOptions{})
		if err == nil {
			t.Errorf("NewRedis(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error for a bad URL leaks the password: %v", err)
		}
	}
}

// redisServer runs a private redis-server on port, for outage tests.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T, port int) *redisServer {
	t.Helper()
	s := &redisServer{t: t, port: port}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	s.cmd.Dir = s.t.TempDir()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestRedisRecovers kills and restarts a private Redis: Ping must fail fast
// while it is down, and the client and an existing subscription must work
// again once it is back, without any action from the caller.
func TestRedisRecovers(t *testing.T) {
	redisURL(t) // the Redis test tier
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH; skipping the outage test")
	}
	ctx := t.Context()
	port := freePort(t)
	srv := startRedisServer(t, port)
	c, err := cache.NewRedis(ctx, "redis://127.0.0.1:"+strconv.Itoa(port)+"/0", cache.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, "invalidate")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	srv.stop()
	start := time.Now()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with Redis down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ping took %v to fail, want under 2s", d)
	}
	if _, _, err := c.Get(ctx, cache.UserFeatures(), "k"); err == nil {
		t.Error("Get succeeded with Redis down")
	}

	srv.start()
	deadline := time.Now().Add(30 * time.Second)
	for c.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("client did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustSet(t, c, cache.UserFeatures(), "k", "v")

	// The subscription is restored by go-redis; messages published before
	// it is may be lost, so publish until one arrives.
	for {
		if err := c.Publish(ctx, "invalidate", []byte("after restart")); err != nil {
			t.Fatal(err)
		}
		select {
		case m, ok := <-sub.C():
			if !ok {
				t.Fatal("subscription closed by the outage")
			}
			if string(m) != "after restart" {
				t.Fatalf("received %q", m)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("subscription did not resubscribe after Redis came back")
		}
	}
}
