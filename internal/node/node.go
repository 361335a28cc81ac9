// Package node is the composition root of a fedrisk process. Open builds the
// resources a process shares — database (migrated), cache, key manager,
// audit log, API tokens, consent domain, peer identities, TLS — once, and
// closes them in reverse order. New gives every service its own listener
// with the shared HTTP conventions (/health, /ready, /metrics, JSON errors,
// request metrics), an optional plain-HTTP operations listener (listen.ops)
// for probes and scrapers, and shuts everything down gracefully when its
// context ends. Admin commands open the same Resources without listeners.
//
// Services are added through Factory values (see services.go): a new
// service is a package of its own plus one line in the table, and its
// factory takes from Env only what the service uses.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Options is everything a node needs; main builds it.
type Options struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry // the process's own registry, never the global one
	Build    string               // binary version, for logs and /{service} info
	// Services maps service names to factories; nil means Builtin().
	Services map[string]Factory
	// OnListening, if set, is called once every listener is bound (tests
	// use it to learn the addresses of ":0" listeners).
	OnListening func(*Node)
	// Open, if set, tunes how the resources are opened (tests hand in a
	// database or cache; Logger and Registry are taken from above).
	Open OpenOptions
}

// Env is what a service factory gets: the process's shared resources, and
// a logger and a metrics registerer of the service's own.
type Env struct {
	Res *Resources
	// Log is scoped with the service's name.
	Log *slog.Logger
	// Registerer takes the service's metrics: they land in the process
	// registry (the ops listener) and in the service's own, which its
	// listener's /metrics shows.
	Registerer prometheus.Registerer
	Build      string
}

// Service is one running service: it adds its routes to the mux of its
// listener and releases its resources on Close.
type Service interface {
	Mount(mux *http.ServeMux)
	Close() error
}

// Public is implemented by services whose listener faces browsers (the
// console): it shows /health but neither /ready nor /metrics.
type Public interface{ Public() bool }

// stateless reports services that keep no state of their own: a process
// running only them opens no database, keys or consent domain
// (OpenOptions.Stateless).
func stateless(service string) bool { return service == config.ServiceConsole }

// ListenerTLS is implemented by services whose listener has a TLS
// configuration of its own (the console: it faces browsers, not peers);
// nil means plain HTTP.
type ListenerTLS interface{ ListenerTLS() *tls.Config }

// Drainer is implemented by services with long-lived requests (streams)
// that must end when shutdown begins, or the grace period would wait on them.
type Drainer interface{ Drain() }

// Factory builds a service.
type Factory func(ctx context.Context, e Env) (Service, error)

// Node is one party's running process.
type Node struct {
	opts     Options
	log      *slog.Logger
	res      *Resources
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

// New opens the node's resources (Open) and binds its listeners; Serve
// starts answering. On error everything opened so far is closed.
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
	oo := opts.Open
	oo.Log, oo.Registerer = n.log, opts.Registry
	oo.Stateless = !slices.ContainsFunc(cfg.Services, func(s string) bool { return !stateless(s) })
	if n.res, err = Open(ctx, cfg, oo); err != nil {
		return nil, err
	}
	if err := n.checkSecurity(); err != nil {
		return nil, err
	}
	checks := readyChecks(n.res)

	metrics := web.NewMetrics(opts.Registry)
	own := map[string]*prometheus.Registry{}
	for _, name := range cfg.Services {
		own[name] = prometheus.NewRegistry()
	}
	for _, name := range cfg.Services {
		factory, ok := opts.Services[name]
		if !ok {
			return nil, fmt.Errorf("service %q is not built into this binary", name)
		}
		slog := n.log.With("service", name)
		svc, err := factory(ctx, Env{Res: n.res, Log: slog, Registerer: teeRegisterer{proc: opts.Registry, own: own[name]}, Build: opts.Build})
		if err != nil {
			return nil, fmt.Errorf("start %s service: %w", name, err)
		}
		n.services = append(n.services, svc)
		mux := http.NewServeMux()
		if p, ok := svc.(Public); ok && p.Public() {
			// A listener for browsers shows liveness only: /ready names
			// peers and dependencies, /metrics the whole service (the ops
			// listener is where probes and scrapers get both).
			mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
				web.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			})
		} else {
			web.Mount(mux, serviceGatherer(name, opts.Registry, own), checks, cfg.HTTP.PeerTimeout, n)
		}
		svc.Mount(mux)
		h := web.Middleware{Service: name, Log: slog, Metrics: metrics, MaxBodyBytes: cfg.HTTP.MaxBodyBytes}.Wrap(mux)
		listenTLS := n.res.ServerTLS
		if lt, ok := svc.(ListenerTLS); ok {
			listenTLS = lt.ListenerTLS()
		}
		srv, err := web.Listen(name, cfg.Addrs[name], h, n.timeouts(), listenTLS, slog)
		if err != nil {
			return nil, err
		}
		n.servers = append(n.servers, srv)
	}
	if cfg.OpsAddr != "" {
		mux := http.NewServeMux()
		web.Mount(mux, opts.Registry, checks, cfg.HTTP.PeerTimeout, n)
		srv, err := web.Listen(OpsListener, cfg.OpsAddr, mux, n.timeouts(), nil, n.log.With("service", OpsListener))
		if err != nil {
			return nil, err
		}
		n.servers = append(n.servers, srv)
	}
	return n, nil
}

// checkSecurity reports what leaves the node open to impersonation or
// exposure: a loud warning each, and in strict security mode a refusal
// to start.
func (n *Node) checkSecurity() error {
	cfg := n.opts.Config
	issues := slices.Clone(n.res.trustIssues)
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		issues = append(issues, fmt.Sprintf("data_dir %s has mode %04o: other users of this machine can reach the database, keys and inputs in it; chmod 700 it",
			cfg.DataDir, fi.Mode().Perm()))
	}
	for _, issue := range issues {
		if cfg.SecurityMode == "strict" {
			return fmt.Errorf("security_mode=strict: %s", issue)
		}
		n.log.Warn("SECURITY: " + issue)
	}
	return nil
}

// OpsListener names the operations listener (listen.ops) in logs and Addr.
const OpsListener = "ops"

func (n *Node) timeouts() web.Timeouts {
	h := n.opts.Config.HTTP
	return web.Timeouts{ReadHeader: h.ReadHeaderTimeout, Read: h.ReadTimeout, Write: h.WriteTimeout, Idle: h.IdleTimeout}
}

// readyChecks are what /ready probes: the database, the cache and the
// remote consent service (required), and every declared peer
// (informational: another institution's outage leaves this node ready, its
// failure named under "degraded").
func readyChecks(r *Resources) []web.Check {
	cfg := r.Config
	var checks []web.Check
	if r.DB != nil {
		checks = append(checks, web.Check{Name: "database", Fn: r.DB.PingContext})
	}
	checks = append(checks, web.Check{Name: "cache", Fn: r.Cache.Ping})
	for _, p := range cfg.Peers {
		if p.URL != "" {
			checks = append(checks, web.PeerCheck(r.PeerClient, p.Name, p.URL))
		}
		for _, svc := range config.AllServices() {
			if u := p.ServiceURLs[svc]; u != "" && u != p.URL {
				checks = append(checks, web.PeerCheck(r.PeerClient, p.Name+"/"+svc, u))
			}
		}
	}
	if cfg.ConsentServiceURL != "" {
		// Required: this node checks consent through it.
		c := web.PeerCheck(r.PeerClient, "consent-service", cfg.ConsentServiceURL)
		c.Informational = false
		checks = append(checks, c)
	}
	return checks
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
func (n *Node) Cache() cache.Cache { return n.res.Cache }

// DB returns the node's database (for the CLI and tests).
func (n *Node) DB() *sqldb.DB { return n.res.DB }

// Resources returns the node's shared resources (for tests).
func (n *Node) Resources() *Resources { return n.res }

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
	if n.res != nil {
		if err := n.res.Close(); err != nil {
			n.log.Warn("close resources", "err", err)
		}
	}
}
