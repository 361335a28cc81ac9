// Package consentnode assembles the consent service of one node from the
// node's database, cache and configuration: the key manager, the audit log,
// the SQL store, the domain service, its HTTP API and its background jobs
// (expiry sweep, signed audit checkpoints).
package consentnode

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/consent/sqlstore"
	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Deps is what the consent service needs from its node.
type Deps struct {
	Config config.Config
	DB     *sqldb.DB
	Cache  cache.Cache
	Log    *slog.Logger
}

// Service is a running consent service.
type Service struct {
	Domain *consent.Service
	Keys   *keys.Manager
	Audit  *sqlaudit.Log
	api    *consentapi.API
	revs   *revocations
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Intervals of the background jobs.
const (
	ExpiryEvery     = time.Minute
	CheckpointEvery = 5 * time.Minute
)

// New builds the consent service and starts its background jobs.
func New(ctx context.Context, d Deps) (*Service, error) {
	km, err := OpenKeys(ctx, d.Config, d.DB, d.Log)
	if err != nil {
		return nil, err
	}
	alog := sqlaudit.New(d.DB)
	store := sqlstore.New(d.DB, alog)
	reader := func(ctx context.Context, subjectRef string) ([]audit.Entry, error) {
		return alog.List(ctx, sqlaudit.Filter{Subject: subjectRef, Limit: 10000})
	}
	svc := consent.NewService(store, Crypto{km}, km, alog, reader, d.Cache, consent.Config{
		Issuer:     Issuer(d.Config.Party),
		Controller: consent.Controller{Name: d.Config.Party},
	}, d.Log)
	revs := &revocations{cache: d.Cache, stop: make(chan struct{})}
	api := consentapi.New(svc, jwksSource{km}, auth.NewTokens(sqlauth.New(d.DB)), revs, consentapi.Options{
		AuthRequired: d.Config.AuthRequired,
		PeerParty:    peerParty,
		Auditor:      alog,
		Log:          d.Log,
	})
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{Domain: svc, Keys: km, Audit: alog, api: api, revs: revs, cancel: cancel}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); svc.RunExpiry(bg, ExpiryEvery) }()
	go func() { defer s.wg.Done(); alog.RunCheckpoints(bg, CheckpointKeys{km}, CheckpointEvery, d.Log) }()
	return s, nil
}

// Issuer is the iss of a party's tokens and receipts.
func Issuer(party string) string { return "fedrisk:" + party }

// Mount adds the consent routes.
func (s *Service) Mount(mux *http.ServeMux) { s.api.Mount(mux) }

// Drain ends the revocation streams so a graceful shutdown is not held up
// by them.
func (s *Service) Drain() { s.revs.drain() }

// Close stops the background jobs.
func (s *Service) Close() error {
	s.revs.drain()
	s.cancel()
	s.wg.Wait()
	return nil
}

func peerParty(cs *tls.ConnectionState) string {
	party, err := pki.PeerParty(cs)
	if err != nil {
		return ""
	}
	return party
}

// OpenKeys opens the key manager with the root key from ENCRYPTION_KEY, or
// — for a development node without one — from root.key in the data
// directory, created on first use with a warning.
func OpenKeys(ctx context.Context, cfg config.Config, db *sqldb.DB, log *slog.Logger) (*keys.Manager, error) {
	root, err := RootKey(cfg, log)
	if err != nil {
		return nil, err
	}
	km, err := keys.New(ctx, sqlkeys.New(db), root, keys.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	return km, nil
}

// RootKey returns the root key bytes.
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

// Crypto adapts keys.Manager to consent.Crypto, translating its errors.
type Crypto struct{ M *keys.Manager }

// NewDataKey implements consent.Crypto.
func (c Crypto) NewDataKey(ctx context.Context) (string, error) { return c.M.NewDataKey(ctx) }

// Encrypt implements consent.Crypto.
func (c Crypto) Encrypt(ctx context.Context, id string, pt, aad []byte) ([]byte, error) {
	return c.M.Encrypt(ctx, id, pt, aad)
}

// Decrypt implements consent.Crypto.
func (c Crypto) Decrypt(ctx context.Context, id string, ct, aad []byte) ([]byte, error) {
	b, err := c.M.Decrypt(ctx, id, ct, aad)
	return b, translate(err)
}

// DestroyDataKey implements consent.Crypto.
func (c Crypto) DestroyDataKey(ctx context.Context, id string) error {
	return translate(c.M.DestroyDataKey(ctx, id))
}

// BlindIndex implements consent.Crypto.
func (c Crypto) BlindIndex(v []byte) []byte { return c.M.BlindIndex(v) }

// Pseudonym implements consent.Crypto.
func (c Crypto) Pseudonym(v []byte) string { return c.M.Pseudonym(v) }

func translate(err error) error {
	if errors.Is(err, keys.ErrKeyDestroyed) {
		return fmt.Errorf("%w: %w", consent.ErrKeyDestroyed, err)
	}
	return err
}

// CheckpointKeys signs and verifies audit checkpoints with the consent
// service's RS256 keys.
type CheckpointKeys struct{ M *keys.Manager }

// SignCheckpoint implements audit.Signer.
func (k CheckpointKeys) SignCheckpoint(ctx context.Context, msg []byte) (string, []byte, error) {
	kid, key, err := k.M.Signer(ctx)
	if err != nil {
		return "", nil, err
	}
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	return kid, sig, err
}

// VerifyCheckpoint implements audit.SignatureVerifier.
func (k CheckpointKeys) VerifyCheckpoint(ctx context.Context, kid string, msg, sig []byte) error {
	pub, err := k.M.PublicKey(ctx, kid)
	if err != nil {
		return err
	}
	h := sha256.Sum256(msg)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig)
}

type jwksSource struct{ m *keys.Manager }

func (j jwksSource) JWKSJSON(ctx context.Context) ([]byte, error) {
	set, err := j.m.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

// revocations fans the cache's revocation channel out to streams.
type revocations struct {
	cache cache.Cache
	once  sync.Once
	stop  chan struct{}
}

func (r *revocations) drain() { r.once.Do(func() { close(r.stop) }) }

func (r *revocations) Subscribe(ctx context.Context) (<-chan string, func(), error) {
	sub, err := r.cache.Subscribe(ctx, consent.RevocationChannel)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.stop:
				return
			case <-done:
				return
			case msg, ok := <-sub.C():
				if !ok {
					return
				}
				select {
				case out <- string(msg):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(done); sub.Close() }) }, nil
}
