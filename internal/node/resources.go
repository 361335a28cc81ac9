package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
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

	closers []func() error
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

// openPeers builds the peer identities, the TLS configurations and the
// client towards peers.
func (r *Resources) openPeers(cfg config.Config) error {
	names := make([]string, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		names = append(names, p.Name)
	}
	allow, err := pki.NewAllowlist(names...)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	r.Peers = authhttp.Peers{Allowlist: allow, PlainLoopback: !cfg.TLS.Enabled() && !cfg.AuthRequired}
	var clientTLS *tls.Config
	if r.ServerTLS, clientTLS, err = loadTLS(cfg.TLS); err != nil {
		return err
	}
	transport := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second}
	r.PeerClient = &http.Client{Timeout: 10 * time.Second, Transport: transport}
	r.push(func() error { transport.CloseIdleConnections(); return nil })
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
