package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Resources are what one process opens once and shares between its
// services and admin commands: the database, the cache, the key manager,
// the audit log, the API tokens, the consent domain, the peer identities
// and the TLS material. Open builds them; Close releases them in the
// reverse order. Services take from them only what they use.
type Resources struct {
	Config config.Config
	Log    *slog.Logger
	// Registerer is the process's metrics registry.
	Registerer prometheus.Registerer

	DB     *sqldb.DB
	Cache  cache.Cache
	Keys   *keys.Manager
	Audit  *sqlaudit.Log
	Tokens *auth.Tokens
	// Consent is the consent domain on this node's database, for every
	// service that checks consent in process; Revocations wakes the
	// revocation streams after a withdrawal.
	Consent     *consent.Service
	Revocations *consentnode.Broadcast
	// SubjectRefKey is the federation's key of per-host subject
	// references (nil when subject_ref_key is not set).
	SubjectRefKey []byte

	// Peers identifies the other parties on the peer APIs; PeerClient
	// calls them (mutual TLS when configured), with a deadline on every
	// call; ServerTLS is the listeners' TLS configuration (nil: plain
	// HTTP).
	Peers      authhttp.Peers
	PeerClient *http.Client
	ServerTLS  *tls.Config

	// trustIssues are the peers a certificate from the wrong institution
	// could impersonate (warned about at start; refused in strict mode).
	trustIssues []string
	closers     []func() error
}

// OpenOptions are what Open takes beside the configuration.
type OpenOptions struct {
	Log        *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil: a private registry
	// DB and Cache, when set, are used instead of opening the configured
	// ones (tests hand in a conformance backend); Close leaves them open.
	DB    *sqldb.DB
	Cache cache.Cache
	// Stateless opens only what a service that keeps no state needs (the
	// console: it calls the other services' APIs): an in-memory cache, the
	// peer identities and TLS — no database, keys or consent domain.
	Stateless bool
	// Admin opens the resources for an admin command (keys, audit,
	// tokens, features): an unreachable Redis is reported and replaced by
	// an in-memory cache instead of failing — an operator can rotate keys
	// or verify the audit log during a cache outage — and no background
	// work starts.
	Admin bool
}

// Open opens the resources of cfg's node: the database (migrated, or
// checked when migrate_on_start is off, and claimed for cfg's party), the
// cache, the key manager (its root key from ENCRYPTION_KEY or, for a
// development node, data_dir/root.key), the audit log, the API tokens, the
// consent domain, the peer allowlist and the TLS configurations. On error
// everything opened so far is closed.
func Open(ctx context.Context, cfg config.Config, o OpenOptions) (_ *Resources, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	r := &Resources{Config: cfg, Log: o.Log, Registerer: o.Registerer}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if o.Stateless {
		if r.Cache = o.Cache; r.Cache == nil {
			r.Cache = cache.NewMemory(cache.MemoryOptions{})
			r.push(r.Cache.Close)
		}
		return r, r.openPeers(cfg)
	}

	if r.DB = o.DB; r.DB == nil {
		if r.DB, err = OpenDatabase(ctx, cfg, r.Log); err != nil {
			return nil, err
		}
		r.push(r.DB.Close)
	}
	if err := recordParty(ctx, r.DB, cfg.Party); err != nil {
		return nil, err
	}
	if r.Cache = o.Cache; r.Cache == nil {
		r.Cache, err = buildCache(ctx, cfg, r.Registerer)
		if err != nil && o.Admin && cfg.RedisURL != "" {
			r.Log.Warn("Redis is unreachable: this command goes on without the shared cache", "err", err)
			noRedis := cfg
			noRedis.RedisURL = ""
			r.Cache, err = buildCache(ctx, noRedis, prometheus.NewRegistry())
		}
		if err != nil {
			return nil, err
		}
		r.push(r.Cache.Close)
	}
	root, err := RootKey(cfg, r.Log)
	if err != nil {
		return nil, err
	}
	if r.Keys, err = keys.New(ctx, sqlkeys.New(r.DB), root, keys.Options{Logger: r.Log, Registerer: r.Registerer}); err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	r.Audit = sqlaudit.New(r.DB)
	r.Tokens = auth.NewTokens(sqlauth.New(r.DB))
	if cfg.SubjectRefKey != "" {
		if r.SubjectRefKey, err = config.DecodeKey(cfg.SubjectRefKey); err != nil {
			return nil, fmt.Errorf("subject_ref_key: %w", err)
		}
	}
	r.Revocations = consentnode.NewBroadcast()
	r.Consent = consentnode.Domain(consentnode.DomainDeps{Party: cfg.Party, DB: r.DB, Keys: r.Keys, Audit: r.Audit, Cache: r.Cache,
		SubjectRefKey: r.SubjectRefKey, Revoked: r.Revocations.Notify, Log: r.Log.With("component", "consent")})
	// The consent domain follows the revocation log, so no cached
	// verification outlives a withdrawal made by any process on this
	// database, whatever the cache does. (An admin command verifies
	// nothing: without the watch its domain reads the database.)
	if !o.Admin {
		watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
		watching := make(chan struct{})
		go func() { defer close(watching); r.Consent.WatchRevocations(watchCtx) }()
		r.push(func() error { stopWatch(); <-watching; return nil })
	}

	return r, r.openPeers(cfg)
}

// openPeers builds the peer identities (each peer bound to its trust
// anchor), the TLS configurations and the client towards peers, which
// trusts for each peer only that peer's anchor.
func (r *Resources) openPeers(cfg config.Config) error {
	var clientTLS *tls.Config
	var err error
	if r.Peers, r.ServerTLS, clientTLS, r.trustIssues, err = loadPeers(cfg); err != nil {
		return err
	}
	newTransport := func(c *tls.Config) *http.Transport {
		return &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second}
	}
	router := &peerRouter{peers: map[string]*http.Transport{}, other: newTransport(clientTLS)}
	for _, p := range cfg.Peers {
		t := router.other
		if clientTLS != nil {
			c, err := r.Peers.Allowlist.ClientConfig(p.Name, clientCertOf(clientTLS))
			if err != nil {
				return err
			}
			t = newTransport(c)
		}
		for _, u := range peerURLs(p) {
			key, err := hostKey(u)
			if err != nil {
				return fmt.Errorf("peers: %s: %w", p.Name, err)
			}
			if prev, ok := router.owner[key]; ok && prev != p.Name && (r.Peers.Allowlist.HasOwnAnchor(prev) || r.Peers.Allowlist.HasOwnAnchor(p.Name)) {
				return fmt.Errorf("peers %s and %s share the address %s but have different trust anchors: give each its own address", prev, p.Name, key)
			} else if ok {
				continue
			}
			router.set(key, p.Name, t)
		}
	}
	r.PeerClient = &http.Client{Timeout: 10 * time.Second, Transport: router}
	r.push(func() error { router.CloseIdleConnections(); return nil })
	return nil
}

// push adds a cleanup step; Close runs them last in, first out.
func (r *Resources) push(f func() error) { r.closers = append(r.closers, f) }

// Close releases the resources in the reverse order of their opening.
func (r *Resources) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	r.closers = nil
	return errors.Join(errs...)
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
func recordParty(ctx context.Context, db *sqldb.DB, party string) error {
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
		rc, err := cache.NewRedis(ctx, cfg.RedisURL, cache.RedisOptions{Prefix: RedisPrefix(cfg.Party)})
		if err != nil {
			return nil, fmt.Errorf("open redis: %w", err)
		}
		c = rc
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

// RedisPrefix is the key prefix of a party's entries in a shared Redis.
func RedisPrefix(party string) string { return "fedrisk:" + party }

// RootKey returns the root key bytes: ENCRYPTION_KEY, or — for a
// development node without one — data_dir/root.key, created on first use
// with a warning.
func RootKey(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.EncryptionKey != "" {
		return config.DecodeKey(cfg.EncryptionKey)
	}
	path := filepath.Join(cfg.DataDir, "root.key")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		k, err := keys.GenerateRootKey()
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		if _, err := f.WriteString(k + "\n"); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		log.Warn("ENCRYPTION_KEY is not set: generated a development root key; set ENCRYPTION_KEY (openssl rand -base64 32) in production", "file", path)
	}
	return keys.LoadRootKeyFile(path)
}

// loadPeers builds the peer identities and the TLS configurations: the
// allowlist binding each peer to its trust anchor (peers[].ca_file, else
// tls.ca_file) and pins, the listeners' configuration (nil: plain HTTP)
// trusting every anchor, and the client configuration towards
// destinations other than the peers (nil: no PKI configured). issues name
// peers that any of several CAs could impersonate, or that no anchor
// admits.
func loadPeers(cfg config.Config) (peers authhttp.Peers, server, client *tls.Config, issues []string, err error) {
	t := cfg.TLS
	var shared []*x509.Certificate
	if t.CAFile != "" {
		if shared, err = pki.LoadCertificates(strings.Split(t.CAFile, ",")...); err != nil {
			return peers, nil, nil, nil, err
		}
	}
	all := slices.Clone(shared)
	trust := make([]pki.PeerTrust, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		pt := pki.PeerTrust{Party: p.Name}
		if p.CAFile != "" {
			if pt.Roots, err = pki.LoadCertificates(strings.Split(p.CAFile, ",")...); err != nil {
				return peers, nil, nil, nil, fmt.Errorf("peers: %s: ca_file: %w", p.Name, err)
			}
			all = append(all, pt.Roots...)
		}
		for _, s := range p.SPKI {
			pin, err := pki.ParseSPKIPin(s)
			if err != nil {
				return peers, nil, nil, nil, fmt.Errorf("peers: %s: %w", p.Name, err)
			}
			pt.SPKI = append(pt.SPKI, pin)
		}
		trust = append(trust, pt)
	}
	allow, err := pki.NewBoundAllowlist(shared, trust...)
	if err != nil {
		return peers, nil, nil, nil, fmt.Errorf("peers: %w", err)
	}
	// Plain-HTTP peers on loopback name themselves: only for a node without
	// TLS and without AUTH_REQUIRED (the demo), never in strict mode.
	peers = authhttp.Peers{Allowlist: allow, PlainLoopback: !t.Enabled() && !cfg.AuthRequired && cfg.SecurityMode != "strict"}

	var pool *x509.CertPool
	if len(all) > 0 {
		pool = x509.NewCertPool()
		for _, c := range all {
			pool.AddCert(c)
		}
	}
	if t.Enabled() {
		cert, err := pki.LoadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return peers, nil, nil, nil, err
		}
		server = pki.ServerConfig(cert, pool, t.RequireClientCert)
	}
	var clientCert *tls.Certificate
	if t.ClientCertFile != "" {
		c, err := pki.LoadKeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return peers, nil, nil, nil, err
		}
		clientCert = &c
	}
	if len(all) > 0 || clientCert != nil {
		var sharedPool *x509.CertPool
		if len(shared) > 0 {
			sharedPool = x509.NewCertPool()
			for _, c := range shared {
				sharedPool.AddCert(c)
			}
		}
		client = pki.ClientConfig(clientCert, sharedPool)
	}
	if server == nil && client == nil {
		return peers, nil, nil, nil, nil // no PKI configured: peers over plain HTTP or public CAs
	}
	cas := pki.Authorities(shared)
	for _, p := range cfg.Peers {
		switch {
		case allow.HasOwnAnchor(p.Name):
		case cas > 1:
			issues = append(issues, fmt.Sprintf("peer %q has no trust anchor of its own and tls.ca_file holds %d certificate authorities: "+
				"any of them can issue a certificate naming %q and be taken for it; set peers[].ca_file to its institution's CA (or pin peers[].spki_sha256)", p.Name, cas, p.Name))
		case cas == 0:
			issues = append(issues, fmt.Sprintf("peer %q has no trust anchor (neither peers[].ca_file nor tls.ca_file): its certificates are refused", p.Name))
		}
	}
	return peers, server, client, issues, nil
}

// clientCertOf returns the client certificate of c (nil: none).
func clientCertOf(c *tls.Config) *tls.Certificate {
	if len(c.Certificates) == 0 {
		return nil
	}
	return &c.Certificates[0]
}

// peerURLs are the base URLs of p's services.
func peerURLs(p config.Peer) []string {
	var out []string
	if p.URL != "" {
		out = append(out, p.URL)
	}
	for _, svc := range config.AllServices() {
		if u := p.ServiceURLs[svc]; u != "" {
			out = append(out, u)
		}
	}
	return out
}

// hostKey is the host:port a URL reaches (the scheme's port when none is
// given).
func hostKey(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	return hostKeyOf(u), nil
}

func hostKeyOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// peerRouter sends each call to a peer through a transport that verifies
// that peer's servers against its own trust anchor; other destinations
// (a remote consent service of this party) go through other.
type peerRouter struct {
	peers map[string]*http.Transport // host:port → transport
	owner map[string]string          // host:port → peer
	other *http.Transport
}

func (p *peerRouter) set(key, party string, t *http.Transport) {
	if p.owner == nil {
		p.owner = map[string]string{}
	}
	p.peers[key], p.owner[key] = t, party
}

func (p *peerRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	if t := p.peers[hostKeyOf(req.URL)]; t != nil {
		return t.RoundTrip(req)
	}
	return p.other.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of every transport.
func (p *peerRouter) CloseIdleConnections() {
	p.other.CloseIdleConnections()
	for _, t := range p.peers {
		t.CloseIdleConnections()
	}
}
