// Package consentnode assembles the consent service of one node from the
// node's shared resources (internal/node builds them once per process): the
// consent domain over its SQL store (Domain), its HTTP API and its
// background jobs (expiry sweep, signed audit checkpoints). It also holds
// the adapters from keys.Manager and the audit log to the consent domain's
// interfaces.
package consentnode

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/consent/sqlconsent"
	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// DomainDeps is what the consent domain is built from.
type DomainDeps struct {
	Party string
	DB    *sqldb.DB
	Keys  *keys.Manager
	Audit *sqlaudit.Log
	Cache cache.Cache
	// SubjectRefKey is the federation's key of per-host subject references
	// (nil: tokens carry none).
	SubjectRefKey []byte
	// Revoked is called after a withdrawal commits (it wakes the
	// revocation streams; see Broadcast).
	Revoked func()
	Log     *slog.Logger
}

// Domain builds the consent domain on the node's database. A process
// builds it once and hands it to every service that needs consent in
// process (the consent API, PSI's consent filter, scoring's tokens).
func Domain(d DomainDeps) *consent.Service {
	alog := d.Audit
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
	return consent.NewService(sqlconsent.New(d.DB, alog), Crypto{d.Keys}, KeySource{d.Keys}, alog, reader, d.Cache, consent.Config{
		Issuer:        consent.Issuer(d.Party),
		Controller:    consent.Controller{Name: d.Party},
		Revoked:       d.Revoked,
		SubjectRefKey: d.SubjectRefKey,
		RevocationLog: Revocations{d.Audit},
	}, d.Log)
}

// Deps is what the consent service needs from its node.
type Deps struct {
	Domain *consent.Service
	Keys   *keys.Manager
	Audit  *sqlaudit.Log
	// Tokens authenticates bearer tokens; Peers identifies partner nodes
	// by their client certificates (introspection, revocation stream).
	Tokens       authhttp.Authenticator
	Peers        authhttp.Peers
	AuthRequired bool
	// Revocations wakes the revocation streams (the Broadcast the domain's
	// Revoked notifies).
	Revocations *Broadcast
	Log         *slog.Logger
}

// Service is a running consent service.
type Service struct {
	// Domain, Keys and Audit are the resources it runs on (for tests and
	// admin tools).
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
	if d.Domain == nil || d.Keys == nil || d.Audit == nil || d.Revocations == nil {
		return nil, errors.New("consent service: domain, keys, audit log and revocations are required")
	}
	alog := d.Audit
	api := consentapi.New(d.Domain, jwksSource{d.Keys}, d.Tokens, Revocations{alog}, consentapi.Options{
		AuthRequired: d.AuthRequired,
		PeerParty:    d.Peers.CertParty,
		Auditor:      consent.NewSampledAuditor(alog, 20),
		Wake:         d.Revocations.Wait,
		Log:          d.Log,
	})
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{Domain: d.Domain, Keys: d.Keys, Audit: d.Audit, api: api, cancel: cancel}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); d.Domain.RunExpiry(bg, ExpiryEvery) }()
	go func() { defer s.wg.Done(); alog.RunCheckpoints(bg, CheckpointKeys{d.Keys}, CheckpointEvery, d.Log) }()
	return s, nil
}

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

// KeySource adapts keys.Manager to consent.KeySource, translating its
// unknown-key error.
type KeySource struct{ M *keys.Manager }

// Signer implements consent.KeySource.
func (k KeySource) Signer(ctx context.Context) (string, *rsa.PrivateKey, error) {
	return k.M.Signer(ctx)
}

// PublicKey implements consent.KeySource.
func (k KeySource) PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	pub, err := k.M.PublicKey(ctx, kid)
	if errors.Is(err, keys.ErrUnknownKey) {
		return nil, fmt.Errorf("%w: %w", consent.ErrUnknownKey, err)
	}
	return pub, err
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

// Revocations reads revocations from the audit log: the revocation stream
// hosts follow, and the consent domain's watch.
type Revocations struct{ Log *sqlaudit.Log }

// Head implements consent.RevocationLog.
func (r Revocations) Head(ctx context.Context) (int64, error) { return r.Log.Head(ctx) }

// Since implements consent.RevocationLog.
func (r Revocations) Since(ctx context.Context, party string, after int64, limit int) ([]consent.Revocation, int64, error) {
	// Read the head first: entries up to it are all committed (appends
	// are serialised through commit), so the stream may move past them.
	head, err := r.Log.Head(ctx)
	if err != nil {
		return nil, after, err
	}
	entries, err := r.Log.List(ctx, sqlaudit.Filter{AfterSeq: after, Limit: limit,
		Actions: []string{"consent.withdraw", "consent.grant", "purpose.publish_policy"}})
	if err != nil {
		return nil, after, err
	}
	upTo := max(after, head)
	if len(entries) == limit {
		upTo = entries[len(entries)-1].Seq
	}
	var out []consent.Revocation
	for _, e := range entries {
		if e.Seq > upTo {
			break
		}
		upTo = max(upTo, e.Seq)
		switch {
		case e.Action == "consent.withdraw" && (party == "" || e.Details["party"] == party):
			out = append(out, consent.Revocation{Seq: e.Seq, Kind: "revoked", ConsentID: e.Object})
		case e.Action == "consent.grant" && e.Details["supersedes"] != "" && (party == "" || e.Details["party"] == party):
			out = append(out, consent.Revocation{Seq: e.Seq, Kind: "revoked", ConsentID: e.Details["supersedes"]})
		case e.Action == "purpose.publish_policy" && e.Details["renewal_required"] == "true":
			out = append(out, consent.Revocation{Seq: e.Seq, Kind: "purge", Purpose: e.Object})
		}
	}
	return out, upTo, nil
}

// Broadcast wakes every waiter at once: Wait returns a channel that Notify
// closes (and replaces). The consent domain notifies it after a withdrawal;
// the revocation streams wait on it.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewBroadcast returns a Broadcast.
func NewBroadcast() *Broadcast { return &Broadcast{ch: make(chan struct{})} }

// Wait returns a channel closed at the next Notify.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

// Notify wakes every waiter.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}
