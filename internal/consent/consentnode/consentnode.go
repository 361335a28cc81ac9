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
		var all []audit.Entry
		for after := int64(0); ; {
			page, err := alog.List(ctx, sqlaudit.Filter{Subject: subjectRef, AfterSeq: after, Limit: sqlaudit.MaxLimit})
			if err != nil {
				return nil, err
			}
			all = append(all, page...)
			if len(page) < sqlaudit.MaxLimit {
				return all, nil
			}
			after = page[len(page)-1].Seq
		}
	}
	var refKey []byte
	if d.Config.SubjectRefKey != "" {
		if refKey, err = config.DecodeKey(d.Config.SubjectRefKey); err != nil {
			return nil, fmt.Errorf("subject_ref_key: %w", err)
		}
	}
	wake := &broadcast{ch: make(chan struct{})}
	svc := consent.NewService(store, Crypto{km}, keySource{km}, alog, reader, d.Cache, consent.Config{
		Issuer:        Issuer(d.Config.Party),
		Controller:    consent.Controller{Name: d.Config.Party},
		Revoked:       wake.notify,
		SubjectRefKey: refKey,
	}, d.Log)
	api := consentapi.New(svc, jwksSource{km}, auth.NewTokens(sqlauth.New(d.DB)), revocations{alog}, consentapi.Options{
		AuthRequired: d.Config.AuthRequired,
		PeerParty:    peerParties(d.Config.Peers),
		Auditor:      consent.NewSampledAuditor(alog, 20),
		Wake:         wake.wait,
		Log:          d.Log,
	})
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{Domain: svc, Keys: km, Audit: alog, api: api, cancel: cancel}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); svc.RunExpiry(bg, ExpiryEvery) }()
	go func() { defer s.wg.Done(); alog.RunCheckpoints(bg, CheckpointKeys{km}, CheckpointEvery, d.Log) }()
	return s, nil
}

// Issuer is the iss of a party's tokens and receipts.
func Issuer(party string) string { return "fedrisk:" + party }

// Mount adds the consent routes and the console's read-only routes
// (whoami, audit log).
func (s *Service) Mount(mux *http.ServeMux) {
	s.api.Mount(mux)
	s.api.MountConsole(mux, auditReader{log: s.Audit, keys: CheckpointKeys{s.Keys}})
}

// auditReader is the audit log as the console routes read it.
type auditReader struct {
	log  *sqlaudit.Log
	keys CheckpointKeys
}

func (a auditReader) Head(ctx context.Context) (int64, error) { return a.log.Head(ctx) }

func (a auditReader) List(ctx context.Context, after int64, limit int, action string) ([]audit.Entry, error) {
	return a.log.List(ctx, sqlaudit.Filter{AfterSeq: after, Limit: limit, Action: action})
}

func (a auditReader) Verify(ctx context.Context) (audit.Report, error) {
	return a.log.Verify(ctx, a.keys)
}

// Drain ends the revocation streams so a graceful shutdown is not held up
// by them.
func (s *Service) Drain() { s.api.Drain() }

// Close stops the background jobs.
func (s *Service) Close() error {
	s.api.Drain()
	s.cancel()
	s.wg.Wait()
	return nil
}

// peerParties accepts as peers only the parties configured in peers: a
// certificate from a trusted CA naming any other party is no peer.
func peerParties(peers []config.Peer) func(cs *tls.ConnectionState) string {
	names := make([]string, 0, len(peers))
	for _, p := range peers {
		names = append(names, p.Name)
	}
	allow, err := pki.NewAllowlist(names...)
	return func(cs *tls.ConnectionState) string {
		if err != nil || len(names) == 0 {
			return ""
		}
		party, err := allow.Check(cs)
		if err != nil {
			return ""
		}
		return party
	}
}

// keySource adapts keys.Manager to consent.KeySource, translating its
// unknown-key error.
type keySource struct{ m *keys.Manager }

func (k keySource) Signer(ctx context.Context) (string, *rsa.PrivateKey, error) {
	return k.m.Signer(ctx)
}

func (k keySource) PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	pub, err := k.m.PublicKey(ctx, kid)
	if errors.Is(err, keys.ErrUnknownKey) {
		return nil, fmt.Errorf("%w: %w", consent.ErrUnknownKey, err)
	}
	return pub, err
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

// revocations reads the revocation stream's events from the audit log.
type revocations struct{ log *sqlaudit.Log }

func (r revocations) Head(ctx context.Context) (int64, error) { return r.log.Head(ctx) }

func (r revocations) Since(ctx context.Context, party string, after int64, limit int) ([]consentapi.Revocation, int64, error) {
	// Read the head first: entries up to it are all committed (appends
	// are serialised through commit), so the stream may move past them.
	head, err := r.log.Head(ctx)
	if err != nil {
		return nil, after, err
	}
	entries, err := r.log.List(ctx, sqlaudit.Filter{AfterSeq: after, Limit: limit,
		Actions: []string{"consent.withdraw", "consent.grant", "purpose.publish_policy"}})
	if err != nil {
		return nil, after, err
	}
	upTo := max(after, head)
	if len(entries) == limit {
		upTo = entries[len(entries)-1].Seq
	}
	var out []consentapi.Revocation
	for _, e := range entries {
		if e.Seq > upTo {
			break
		}
		upTo = max(upTo, e.Seq)
		switch {
		case e.Action == "consent.withdraw" && (party == "" || e.Details["party"] == party):
			out = append(out, consentapi.Revocation{Seq: e.Seq, Kind: "revoked", ConsentID: e.Object})
		case e.Action == "consent.grant" && e.Details["supersedes"] != "" && (party == "" || e.Details["party"] == party):
			out = append(out, consentapi.Revocation{Seq: e.Seq, Kind: "revoked", ConsentID: e.Details["supersedes"]})
		case e.Action == "purpose.publish_policy" && e.Details["renewal_required"] == "true":
			out = append(out, consentapi.Revocation{Seq: e.Seq, Kind: "purge", Purpose: e.Object})
		}
	}
	return out, upTo, nil
}

// broadcast wakes every waiter at once: wait returns a channel that notify
// closes (and replaces).
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}
