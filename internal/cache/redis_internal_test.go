package cache

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
}

// TestRedisDownFailsFast needs no Redis: every call against a port with
// nothing listening fails with no caller deadline, and the client is built
// to fail fast — a short dial timeout, one dial and one command retry, and
// a per-command deadline — rather than with go-redis's defaults (5 dial
// attempts, 3 command retries). How long a failure takes is logged, not
// asserted: that is the machine's business.
func TestRedisDownFailsFast(t *testing.T) {
	for _, url := range []string{"redis://127.0.0.1:1/0", closedPortURL(t)} {
		r, err := newRedis(url, RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		raw := redis.NewClient(opts)
		defer raw.Close()

		if o := r.c.Options(); o.DialTimeout > 2*time.Second || o.DialerRetries > 2 || o.MaxRetries > 1 || !o.ContextTimeoutEnabled {
			t.Errorf("client options dial %v ×%d, retries %d, context timeouts %v: not built to fail fast", o.DialTimeout, o.DialerRetries, o.MaxRetries, o.ContextTimeoutEnabled)
		}
		if r.opts.OpTimeout <= 0 || r.opts.OpTimeout > time.Second || r.opts.PingTimeout > time.Second {
			t.Errorf("per-command deadline %v, ping %v: want at most 1s", r.opts.OpTimeout, r.opts.PingTimeout)
		}
		ctx := context.Background() // no deadline: the timeouts must come from the client
		uf := UserFeatures()
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"Ping", func() error { return r.Ping(ctx) }},
			{"Get", func() error { _, _, err := r.Get(ctx, uf, "k"); return err }},
			{"Set", func() error { return r.Set(ctx, uf, "k", []byte("v"), 0) }},
			{"Incr", func() error { _, err := r.Incr(ctx, uf, "k", 1, 0); return err }},
			{"Publish", func() error { return r.Publish(ctx, "ch", []byte("m")) }},
			{"Subscribe", func() error { _, err := r.Subscribe(ctx, "ch"); return err }},
			{"go-redis default client", func() error { return raw.Get(ctx, "k").Err() }},
		} {
			start := time.Now()
			if err := tc.call(); err == nil {
				t.Errorf("%s on %s succeeded with nothing listening", tc.name, url)
			}
			t.Logf("%s on %s failed in %v", tc.name, url, time.Since(start).Round(time.Millisecond))
		}
	}
}

func TestParseInfoInt(t *testing.T) {
	info := "# Stats\r\ntotal_connections_received:12\r\nevicted_keys:42\r\nevicted_clients:0\r\n"
	for _, tc := range []struct {
		name, info, field string
		want              int64
		wantErr           bool
	}{
		{"found", info, "evicted_keys", 42, false},
		{"prefix is not a match", info, "evicted", 0, true},
		{"missing", info, "expired_keys", 0, true},
		{"not a number", "evicted_keys:lots\r\n", "evicted_keys", 0, true},
		{"empty", "", "evicted_keys", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInfoInt(tc.info, tc.field)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseInfoInt = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParseInfoInt(f *testing.F) {
	f.Add("# Stats\r\nevicted_keys:42\r\n")
	f.Add("evicted_keys:-1")
	f.Add("evicted_keys:99999999999999999999\n")
	f.Fuzz(func(t *testing.T, info string) {
		n, err := parseInfoInt(info, "evicted_keys")
		if err != nil && n != 0 {
			t.Errorf("error %v with value %d", err, n)
		}
	})
}
