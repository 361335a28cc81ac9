// Package nodetest builds what tests of services need from a node: a
// party's shared resources (node.Open) on a test database, and the Env a
// service factory takes, so a test builds a service the way the node does.
package nodetest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Options tune Resources; the zero value is usable.
type Options struct {
	// DB is the party's database (nil: the configured one, SQLite under
	// cfg.DataDir by default).
	DB *sqldb.DB
	// Cache is the party's cache (nil: a fresh in-memory one).
	Cache cache.Cache
	// Registerer takes the metrics (nil: a fresh registry).
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Resources opens cfg's party's resources for a test and closes them at
// its end. cfg.DataDir defaults to a temporary directory.
func Resources(tb testing.TB, cfg config.Config, o Options) *node.Resources {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if o.Cache == nil {
		mem := cache.NewMemory(cache.MemoryOptions{})
		tb.Cleanup(func() { mem.Close() })
		o.Cache = mem
	}
	res, err := node.Open(context.Background(), cfg, node.OpenOptions{DB: o.DB, Cache: o.Cache, Registerer: o.Registerer, Log: o.Log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { res.Close() })
	return res
}

// Env is the Env a service factory of res's node gets.
func Env(res *node.Resources, reg prometheus.Registerer) node.Env {
	if reg == nil {
		reg = res.Registerer
	}
	log := res.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return node.Env{Res: res, Log: log, Registerer: reg, Build: "test"}
}

// ConsentService starts the consent service of res's node, as the node
// does, and stops it at the test's end. Its domain is res.Consent.
func ConsentService(tb testing.TB, res *node.Resources) *consentnode.Service {
	tb.Helper()
	svc, err := consentnode.New(context.Background(), node.ConsentDeps(Env(res, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	return svc
}

// Consent opens cfg's party's resources and starts its consent service,
// returning Open's error (a test of a refused start) instead of failing.
// Both are closed at the test's end.
func Consent(tb testing.TB, cfg config.Config, o Options) (*consentnode.Service, error) {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if o.Cache == nil {
		mem := cache.NewMemory(cache.MemoryOptions{})
		tb.Cleanup(func() { mem.Close() })
		o.Cache = mem
	}
	res, err := node.Open(context.Background(), cfg, node.OpenOptions{DB: o.DB, Cache: o.Cache, Registerer: o.Registerer, Log: o.Log})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { res.Close() })
	return ConsentService(tb, res), nil
}
