// Package node wires one party's fedrisk services into a running process:
// it opens the database (and migrates it), builds the cache, loads TLS
// material, gives every service its own listener with the shared HTTP
// conventions (/health, /ready, /metrics, JSON errors, request metrics), and
// shuts everything down gracefully when its context ends.
//
// Services are added through Factory values (see services.go), so a new
// service is a package of its own plus one line in the table; the node does
// not know what a service does.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Options is everything a node needs; main builds it.
type Options struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry // the node's own registry, never the global one
	Build    string               // binary version, for logs and /{service} info
	// Services maps service names to factories; nil means Builtin().
	Services map[string]Factory
	// OnListening, if set, is called once every listener is bound (tests
	// use it to learn the addresses of ":0" listeners).
	OnListening func(*Node)
}

// Deps is what a service gets from the node.
type Deps struct {
	Config     config.Config
	DB         *sqldb.DB
	Cache      cache.Cache
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// PeerClient talks to other parties (mTLS when configured) with a
	// deadline on every call.
	PeerClient *http.Client
	Build      string
}

// Service is one running service: it adds its routes to the mux of its
// listener and releases its resources on Close.
type Service interface {
	Mount(mux *http.ServeMux)
	Close() error
}

// ListenerTLS is implemented by services whose listener has a TLS
// configuration of its own (the console: it faces browsers, not peers);
// nil means plain HTTP.
type ListenerTLS interface{ ListenerTLS() *tls.Config }

// Drainer is implemented by services with long-lived requests (streams)
// that must end when shutdown begins, or the grace period would wait on them.
type Drainer interface{ Drain() }

// Factory builds a service.
type Factory func(ctx context.Context, d Deps) (Service, error)

// Node is one party's running process.
type Node struct {
	opts     Options
	log      *slog.Logger
	db       *sqldb.DB
	cache    cache.Cache
	servers  []*web.Server
	services []Service
	draining atomic.Bool
}

// Run starts a node and serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, opts Options) error {
	n, err := New(ctx, opts)
	if err != nil {
		return err
	}
	return n.Serve(ctx)
}

// New opens the node's resources and binds its listeners; Serve starts
// answering. On error everything opened so far is closed.
func New(ctx context.Context, opts Options) (_ *Node, err error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Services == nil {
		opts.Services = Builtin()
	}
	n := &Node{opts: opts, log: opts.Logger.With("party", cfg.Party)}
	defer func() {
		if err != nil {
			n.close()
		}
	}()

	if n.db, err = OpenDatabase(ctx, cfg, n.log); err != nil {
		return nil, err
	}
	if err := n.recordParty(ctx); err != nil {
		return nil, err
	}
	if n.cache, err = buildCache(ctx, cfg, opts.Registry); err != nil {
		return nil, err
	}
	serverTLS, clientTLS, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	peerClient := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second},
	}
	checks := []web.Check{
		{Name: "database", Fn: n.db.PingContext},
		{Name: "cache", Fn: n.cache.Ping},
	}
	for _, p := range cfg.Peers {
		if p.URL != "" {
			checks = append(checks, web.PeerCheck(peerClient, p.Name, p.URL))
		}
		for _, svc := range config.AllServices() {
			if u := p.ServiceURLs[svc]; u != "" && u != p.URL {
				checks = append(checks, web.PeerCheck(peerClient, p.Name+"/"+svc, u))
			}
		}
	}
	if cfg.ConsentServiceURL != "" {
		checks = append(checks, web.PeerCheck(peerClient, "consent-service", cfg.ConsentServiceURL))
	}

	metrics := web.NewMetrics(opts.Registry)
	deps := Deps{Config: cfg, DB: n.db, Cache: n.cache, Registerer: opts.Registry, PeerClient: peerClient, Build: opts.Build}
	for _, name := range cfg.Services {
		factory, ok := opts.Services[name]
		if !ok {
			return nil, fmt.Errorf("service %q is not built into this binary", name)
		}
		slog := n.log.With("service", name)
		d := deps
		d.Log = slog
		svc, err := factory(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("start %s service: %w", name, err)
		}
		n.services = append(n.services, svc)
		mux := http.NewServeMux()
		web.Mount(mux, opts.Registry, checks, cfg.HTTP.PeerTimeout, n)
		svc.Mount(mux)
		h := web.Middleware{Service: name, Log: slog, Metrics: metrics, MaxBodyBytes: cfg.HTTP.MaxBodyBytes}.Wrap(mux)
		listenTLS := serverTLS
		if lt, ok := svc.(ListenerTLS); ok {
			listenTLS = lt.ListenerTLS()
		}
		srv, err := web.Listen(name, cfg.Addrs[name], h, web.Timeouts{
			ReadHeader: cfg.HTTP.ReadHeaderTimeout, Read: cfg.HTTP.ReadTimeout,
			Write: cfg.HTTP.WriteTimeout, Idle: cfg.HTTP.IdleTimeout,
		}, listenTLS, slog)
		if err != nil {
			return nil, err
		}
		n.servers = append(n.servers, srv)
	}
	return n, nil
}

// OpenDatabase opens the configured database and brings its schema to the
// binary's version (or, with migrate_on_start off, checks that it is).
func OpenDatabase(ctx context.Context, cfg config.Config, log *slog.Logger) (*sqldb.DB, error) {
	db, err := sqldb.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.MigrateOnStart {
		applied, err := db.Migrate(ctx)
		if err != nil {
			db.Close()
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("database migrated", "database", db.Location, "applied", applied, "version", sqldb.Latest())
		}
	} else if err := db.Check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// recordParty remembers which party owns the database and refuses to run
// another party's node on it.
func (n *Node) recordParty(ctx context.Context) error {
	db, party := n.db, n.opts.Config.Party
	if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO node_info (key, value, updated_at) VALUES ('party', ?, ?) ON CONFLICT (key) DO NOTHING`),
		party, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("record party: %w", err)
	}
	var owner string
	if err := db.QueryRowContext(ctx, `SELECT value FROM node_info WHERE key = 'party'`).Scan(&owner); err != nil {
		return fmt.Errorf("record party: %w", err)
	}
	if owner != party {
		return fmt.Errorf("database %s belongs to party %q, this node is %q: use that party's name or another database", db.Location, owner, party)
	}
	return nil
}

func buildCache(ctx context.Context, cfg config.Config, reg prometheus.Registerer) (cache.Cache, error) {
	var c cache.Cache
	if cfg.RedisURL != "" {
		r, err := cache.NewRedis(ctx, cfg.RedisURL, cache.RedisOptions{Prefix: "fedrisk:" + cfg.Party})
		if err != nil {
			return nil, fmt.Errorf("open redis: %w", err)
		}
		c = r
	} else {
		c = cache.NewMemory(cache.MemoryOptions{})
	}
	if cfg.CacheTTL > 0 {
		c = cache.WithTTL(c, cfg.CacheTTL)
	}
	ic, err := cache.Instrument(c, reg)
	if err != nil {
		c.Close()
		return nil, err
	}
	if !cfg.CacheEnabled {
		ic = cache.Disabled(ic)
	}
	return ic, nil
}

// loadTLS returns the listeners' TLS config (nil: plain HTTP) and the client
// config used towards peers.
func loadTLS(t config.TLS) (server, client *tls.Config, err error) {
	var pool *x509.CertPool
	if t.CAFile != "" {
		if pool, err = pki.LoadCertPool(strings.Split(t.CAFile, ",")...); err != nil {
			return nil, nil, err
		}
	}
	if t.Enabled() {
		cert, err := pki.LoadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		server = pki.ServerConfig(cert, pool, t.RequireClientCert)
	}
	var clientCert *tls.Certificate
	if t.ClientCertFile != "" {
		c, err := pki.LoadKeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, nil, err
		}
		clientCert = &c
	}
	if pool == nil && clientCert == nil {
		return server, nil, nil // no PKI configured: peers over plain HTTP or public CAs
	}
	return server, pki.ClientConfig(clientCert, pool), nil
}

// Draining reports whether the node is shutting down.
func (n *Node) Draining() bool { return n.draining.Load() }

// Addr returns the bound address of service name ("" if it does not run).
func (n *Node) Addr(name string) string {
	for _, s := range n.servers {
		if s.Name() == name {
			return s.Addr()
		}
	}
	return ""
}

// Cache returns the node's cache (for the CLI and tests).
func (n *Node) Cache() cache.Cache { return n.cache }

// DB returns the node's database (for the CLI and tests).
func (n *Node) DB() *sqldb.DB { return n.db }

// Serve answers on every listener until ctx ends or a listener fails, then
// stops accepting, lets in-flight requests finish within the grace period,
// and closes the node.
func (n *Node) Serve(ctx context.Context) error {
	defer n.close()
	errc := make(chan error, len(n.servers))
	for _, s := range n.servers {
		go func() { errc <- s.Serve() }()
		n.log.Info("listening", "service", s.Name(), "addr", s.Addr(), "tls", n.opts.Config.TLS.Enabled())
	}
	if n.opts.OnListening != nil {
		n.opts.OnListening(n)
	}
	var serveErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down", "grace", n.opts.Config.HTTP.ShutdownGrace.String())
	case serveErr = <-errc:
		n.log.Error("listener failed", "err", serveErr)
	}
	n.draining.Store(true)
	for _, svc := range n.services {
		if d, ok := svc.(Drainer); ok {
			d.Drain()
		}
	}
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.Config.HTTP.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var shutdownErr error
	for _, s := range n.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Shutdown(grace); err != nil {
				mu.Lock()
				shutdownErr = errors.Join(shutdownErr, fmt.Errorf("%s: in-flight requests cut at the end of the grace period: %w", s.Name(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n.log.Info("stopped")
	return errors.Join(serveErr, shutdownErr)
}

func (n *Node) close() {
	for _, s := range n.servers {
		s.Close() // after a graceful Shutdown this is a no-op; on a failed New it frees the ports
	}
	for i := len(n.services) - 1; i >= 0; i-- {
		if err := n.services[i].Close(); err != nil {
			n.log.Warn("close service", "err", err)
		}
	}
	if n.cache != nil {
		n.cache.Close()
	}
	if n.db != nil {
		n.db.Close()
	}
}
