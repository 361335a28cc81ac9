package consent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/cache"
)

// Crypto is the envelope encryption and keyed hashing the service needs
// (keys.Manager provides it).
type Crypto interface {
	NewDataKey(ctx context.Context) (string, error)
	Encrypt(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, keyID string, ciphertext, aad []byte) ([]byte, error)
	DestroyDataKey(ctx context.Context, keyID string) error
	BlindIndex(value []byte) []byte
	Pseudonym(value []byte) string
}

// KeySource gives the signing key for tokens and receipts and the public
// keys to verify them (keys.Manager provides it).
type KeySource interface {
	Signer(ctx context.Context) (kid string, key *rsa.PrivateKey, err error)
	PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error)
}

// Cache is the part of the node cache the service uses: the token denylist
// and cached verification results (class consent_tokens).
type Cache interface {
	Get(ctx context.Context, class cache.Class, key string) ([]byte, bool, error)
	Set(ctx context.Context, class cache.Class, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, class cache.Class, key string) error
}

// AuditReader lists a subject's audit entries for a data-subject export.
type AuditReader func(ctx context.Context, subjectRef string) ([]audit.Entry, error)

// Config tunes the service.
type Config struct {
	Issuer          string        // iss of tokens and receipts, e.g. "fedrisk:bank"
	Controller      Controller    // who the receipts name as PII controller
	TokenTTL        time.Duration // consent token lifetime; default 15 min
	DefaultValidity time.Duration // consent lifetime when neither request nor purpose says; default 365 days
	MaxValidity     time.Duration // longest consent accepted; default 5 years
	Leeway          time.Duration // clock skew tolerated in token checks; default 30 s
	// SubjectRefKey is the federation's subject reference key: tokens then
	// carry the claim href (see HostRef). Empty: no href.
	SubjectRefKey []byte
	Now           func() time.Time
	// Revoked, if set, is called after a change that revokes tokens has
	// committed (withdrawal, deletion, renewal): the revocation stream
	// wakes up at once instead of at its next tick.
	Revoked func()
	// RevocationLog is where revocations are committed (the audit log).
	// With it, and WatchRevocations running, verifications are cached;
	// without, every verification reads the database.
	RevocationLog RevocationLog
}

// Controller is the PII controller named in receipts.
type Controller struct {
	Name    string `json:"piiController"`
	Contact string `json:"contact,omitempty"`
	Email   string `json:"email,omitempty"`
	Country string `json:"-"`
}

// Service implements the consent rules.
type Service struct {
	store   Store
	crypto  Crypto
	keys    KeySource
	auditor Auditor
	// failures records refused tokens, sampled so a flood cannot stall
	// the audit chain.
	failures Auditor
	// parsed skips re-parsing tokens presented again (signature checked once).
	parsed *TokenCache
	reader AuditReader
	cache  Cache
	cfg    Config
	log    *slog.Logger
	// watch follows the revocation log (WatchRevocations).
	watch *watch
}

// NewService wires a Service.
func NewService(store Store, crypto Crypto, keys KeySource, auditor Auditor, reader AuditReader, c Cache, cfg Config, log *slog.Logger) *Service {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 15 * time.Minute
	}
	if cfg.DefaultValidity <= 0 {
		cfg.DefaultValidity = 365 * 24 * time.Hour
	}
	if cfg.MaxValidity <= 0 {
		cfg.MaxValidity = 5 * 365 * 24 * time.Hour
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Controller.Name == "" {
		cfg.Controller.Name = cfg.Issuer
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A denial is kept as long as a verification cached before it could
	// live (the consent_tokens class TTL), plus the clock skew tolerated.
	keep := max(cfg.TokenTTL, cache.ConsentTokens().TTL) + 2*cfg.Leeway
	return &Service{store: store, crypto: crypto, keys: keys, auditor: auditor, failures: NewSampledAuditor(auditor, 20),
		reader: reader, cache: c, cfg: cfg, log: log, parsed: NewTokenCache(0), watch: newWatch(keep)}
}

// TokenTTL is the lifetime of consent tokens.
func (s *Service) TokenTTL() time.Duration { return s.cfg.TokenTTL }

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

func randomID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// ---- purposes -------------------------------------------------------------

// PurposeRequest creates a purpose with its first policy version.
type PurposeRequest struct {
	ID               string
	Description      string
	PolicyText       string
	PolicyURL        string
	RenewOnNewPolicy bool
	ValidityDays     int
	Actor            string
}

// CreatePurpose creates a purpose at policy version 1.
func (s *Service) CreatePurpose(ctx context.Context, r PurposeRequest) (Purpose, error) {
	if err := CheckPurposeID(r.ID); err != nil {
		return Purpose{}, err
	}
	if r.PolicyText == "" {
		return Purpose{}, invalid("policy_text", "must not be empty")
	}
	for _, f := range []struct {
		name, v string
		max     int
		multi   bool
	}{{"policy_text", r.PolicyText, 64 << 10, true}, {"description", r.Description, 1024, false}, {"policy_url", r.PolicyURL, 512, false}} {
		if err := checkText(f.name, f.v, f.max, f.multi); err != nil {
			return Purpose{}, err
		}
	}
	if r.ValidityDays < 0 || r.ValidityDays > 5*366 {
		return Purpose{}, invalid("validity_days", "must be 0..1830 (0: the default of 365)")
	}
	now := s.now()
	p := Purpose{ID: r.ID, Description: r.Description, PolicyVersion: 1, PolicyURL: r.PolicyURL,
		RenewOnNewPolicy: r.RenewOnNewPolicy, DefaultValidity: time.Duration(r.ValidityDays) * 24 * time.Hour, CreatedAt: now}
	pol := Policy{Purpose: r.ID, Version: 1, Text: r.PolicyText, PublishedAt: now}
	ev := audit.Event{At: now, Actor: r.Actor, Action: "purpose.create", Object: r.ID, Details: map[string]string{"policy_version": "1"}}
	if err := s.store.CreatePurpose(ctx, p, pol, ev); err != nil {
		return Purpose{}, fmt.Errorf("create purpose: %w", err)
	}
	return p, nil
}

// PublishPolicy publishes the next policy version of a purpose.
func (s *Service) PublishPolicy(ctx context.Context, purpose, text, actor string) (Policy, error) {
	if text == "" {
		return Policy{}, invalid("policy_text", "must not be empty")
	}
	if err := checkText("policy_text", text, 64<<10, true); err != nil {
		return Policy{}, err
	}
	if err := CheckPurposeID(purpose); err != nil {
		return Policy{}, fmt.Errorf("publish policy: %w", ErrUnknownPurpose)
	}
	p, err := s.store.GetPurpose(ctx, purpose)
	if err != nil {
		return Policy{}, fmt.Errorf("publish policy: %w", err)
	}
	now := s.now()
	pol := Policy{Purpose: purpose, Version: p.PolicyVersion + 1, Text: text, PublishedAt: now}
	ev := audit.Event{At: now, Actor: actor, Action: "purpose.publish_policy", Object: purpose,
		Details: map[string]string{"policy_version": strconv.Itoa(pol.Version), "renewal_required": strconv.FormatBool(p.RenewOnNewPolicy)}}
	if err := s.store.PublishPolicy(ctx, pol, ev); err != nil {
		return Policy{}, fmt.Errorf("publish policy: %w", err)
	}
	if p.RenewOnNewPolicy {
		defer s.revoked()
		// Cached verifications of tokens under older versions stop counting:
		// in this process at once (every one cached before the log's head
		// now), elsewhere when the watch reads the purge, and through the
		// shared cache's policy version meanwhile.
		if s.cfg.RevocationLog != nil {
			if h, err := s.cfg.RevocationLog.Head(ctx); err == nil {
				s.watch.purge(purpose, h)
			} else {
				s.watch.stale() // trust nothing cached until the watch reads the purge
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), denyTimeout)
		defer cancel()
		if err := s.cache.Set(cctx, cache.ConsentTokens(), policyKey(purpose), []byte(strconv.Itoa(pol.Version)), s.cfg.TokenTTL+2*s.cfg.Leeway); err != nil {
			s.log.WarnContext(ctx, "policy version cache write failed", "purpose", purpose, "err", err)
		}
	}
	return pol, nil
}

// GetPurpose returns a purpose.
func (s *Service) GetPurpose(ctx context.Context, id string) (Purpose, error) {
	if CheckPurposeID(id) != nil {
		return Purpose{}, ErrUnknownPurpose
	}
	return s.store.GetPurpose(ctx, id)
}

// ListPurposes returns every purpose.
func (s *Service) ListPurposes(ctx context.Context) ([]Purpose, error) {
	return s.store.ListPurposes(ctx)
}

// GetPolicy returns one policy version's text.
func (s *Service) GetPolicy(ctx context.Context, purpose string, version int) (Policy, error) {
	if CheckPurposeID(purpose) != nil || version <= 0 || version > 1<<30 {
		return Policy{}, ErrNotFound
	}
	return s.store.GetPolicy(ctx, purpose, version)
}

// ---- consents -------------------------------------------------------------

// GrantRequest records a subject's consent.
type GrantRequest struct {
	Subject        string // raw identifier; normalised, never stored in the clear
	Purpose        string
	Party          string
	Categories     []string
	PolicyVersion  int
	ExpiresAt      time.Time // zero: the purpose's (or the default) validity
	Evidence       Evidence
	IdempotencyKey string
	Actor          string
}

// Grant records a consent and returns it with its signed receipt. A retry
// with the same idempotency key and request returns the stored consent
// (replay=true) and changes nothing.
func (s *Service) Grant(ctx context.Context, r GrantRequest) (Consent, bool, error) {
	c, replay, err := s.grant(ctx, r)
	if err != nil {
		return Consent{}, false, fmt.Errorf("grant: %w", err)
	}
	return c, replay, nil
}

func (s *Service) grant(ctx context.Context, r GrantRequest) (Consent, bool, error) {
	id, err := NormalizeIdentifier(r.Subject)
	if err != nil {
		return Consent{}, false, err
	}
	if err := CheckPurposeID(r.Purpose); err != nil {
		return Consent{}, false, err
	}
	if err := CheckParty(r.Party); err != nil {
		return Consent{}, false, err
	}
	cats := append([]string(nil), r.Categories...)
	if err := checkCategories(cats); err != nil {
		return Consent{}, false, err
	}
	sort.Strings(cats)
	if r.PolicyVersion <= 0 {
		return Consent{}, false, invalid("policy_version", "must name the policy version the subject agreed to")
	}
	if err := checkEvidence(r.Evidence); err != nil {
		return Consent{}, false, err
	}
	if err := checkText("idempotency_key", r.IdempotencyKey, 128, false); err != nil {
		return Consent{}, false, err
	}
	if r.PolicyVersion > 1<<30 {
		return Consent{}, false, invalid("policy_version", "out of range")
	}
	now := s.now()
	if r.Evidence.CollectedAt.After(now.Add(s.cfg.Leeway)) {
		return Consent{}, false, invalid("evidence.collected_at", "is in the future")
	}
	reqHash := requestHash(id, r, cats)
	if r.IdempotencyKey != "" {
		prev, err := s.store.FindByIdempotencyKey(ctx, r.IdempotencyKey)
		switch {
		case err == nil:
			if string(prev.RequestHash) != string(reqHash) {
				return Consent{}, false, ErrIdempotencyConflict
			}
			return prev, true, nil
		case !errors.Is(err, ErrNotFound):
			return Consent{}, false, err
		}
	}
	purpose, err := s.store.GetPurpose(ctx, r.Purpose)
	if err != nil {
		return Consent{}, false, err
	}
	if r.PolicyVersion != purpose.PolicyVersion {
		return Consent{}, false, fmt.Errorf("%w: %d is not the current version %d", ErrOutdatedPolicy, r.PolicyVersion, purpose.PolicyVersion)
	}
	validity := purpose.DefaultValidity
	if validity <= 0 {
		validity = s.cfg.DefaultValidity
	}
	expires := now.Add(validity)
	if !r.ExpiresAt.IsZero() {
		expires = r.ExpiresAt.UTC().Truncate(time.Microsecond)
		if !expires.After(now) {
			return Consent{}, false, invalid("expires_at", "must be in the future")
		}
		if expires.Sub(now) > s.cfg.MaxValidity {
			return Consent{}, false, invalid("expires_at", "more than %d days ahead", int(s.cfg.MaxValidity.Hours()/24))
		}
	}

	subj, err := s.store.FindSubject(ctx, s.crypto.BlindIndex([]byte(id)))
	switch {
	case err == nil && subj.DeletedAt != nil:
		return Consent{}, false, ErrSubjectDeleted
	case errors.Is(err, ErrNotFound):
		if subj, err = s.newSubject(ctx, id, now); err != nil {
			return Consent{}, false, err
		}
	case err != nil:
		return Consent{}, false, err
	}
	supersede := ""
	if prev, err := s.store.ActiveConsent(ctx, subj.ID, r.Purpose, r.Party); err == nil {
		if prev.Usable(now) {
			return Consent{}, false, fmt.Errorf("%w (%s)", ErrConsentExists, prev.ID)
		}
		supersede = prev.ID // renewal under a new policy, or an expired one the sweep has not reached
	} else if !errors.Is(err, ErrNotFound) {
		return Consent{}, false, err
	}

	c := Consent{
		ID: randomID("cns_"), SubjectID: subj.ID, SubjectRef: subj.Pseudonym,
		Purpose: r.Purpose, Party: r.Party, Categories: cats, PolicyVersion: r.PolicyVersion,
		GrantedAt: now, ExpiresAt: expires, Status: StatusActive, Evidence: normEvidence(r.Evidence),
		IdempotencyKey: r.IdempotencyKey, RequestHash: reqHash, UpdatedAt: now,
	}
	if c.Receipt, err = s.signReceipt(ctx, c, purpose); err != nil {
		return Consent{}, false, err
	}
	ev := audit.Event{At: now, Actor: r.Actor, Action: "consent.grant", Subject: subj.Pseudonym, Object: c.ID,
		Details: map[string]string{"purpose": c.Purpose, "party": c.Party, "policy_version": strconv.Itoa(c.PolicyVersion)}}
	if supersede != "" {
		ev.Details["supersedes"] = supersede
	}
	stored, replay, err := s.store.Grant(ctx, subj, c, supersede, ev)
	if errors.Is(err, ErrNotActive) && supersede != "" {
		// The consent to supersede was withdrawn or swept meanwhile: there
		// is nothing left to supersede.
		delete(ev.Details, "supersedes")
		supersede = ""
		stored, replay, err = s.store.Grant(ctx, subj, c, "", ev)
	}
	if err != nil {
		return Consent{}, false, err
	}
	if supersede != "" {
		s.watch.deny(supersede, s.cfg.Now())
		s.deny(ctx, supersede)
		s.revoked()
	}
	return stored, replay, nil
}

func (s *Service) newSubject(ctx context.Context, id string, now time.Time) (Subject, error) {
	dk, err := s.crypto.NewDataKey(ctx)
	if err != nil {
		return Subject{}, err
	}
	subj := Subject{ID: randomID("sub_"), BlindIndex: s.crypto.BlindIndex([]byte(id)), Pseudonym: s.crypto.Pseudonym([]byte(id)), DataKeyID: dk, CreatedAt: now}
	if subj.IdentifierEnc, err = s.crypto.Encrypt(ctx, dk, []byte(id), subjectAAD(subj.ID)); err != nil {
		return Subject{}, err
	}
	return subj, nil
}

func subjectAAD(subjectID string) []byte {
	return []byte("fedrisk/subject/" + subjectID + "/identifier")
}

func checkEvidence(e Evidence) error {
	switch {
	case e.Channel == "" || len(e.Channel) > 64:
		return invalid("evidence.channel", "must be 1..64 characters (e.g. mobile_app, branch, web)")
	case e.Collector == "" || len(e.Collector) > 128:
		return invalid("evidence.collector", "must be 1..128 characters")
	case e.CollectedAt.IsZero():
		return invalid("evidence.collected_at", "is required")
	case len(e.Reference) > 256:
		return invalid("evidence.reference", "longer than 256 characters")
	}
	for _, f := range [][2]string{{"evidence.channel", e.Channel}, {"evidence.collector", e.Collector}, {"evidence.reference", e.Reference}} {
		if err := checkText(f[0], f[1], 256, false); err != nil {
			return err
		}
	}
	return nil
}

func normEvidence(e Evidence) Evidence {
	e.CollectedAt = e.CollectedAt.UTC().Truncate(time.Microsecond)
	return e
}

// requestHash fingerprints a grant for idempotency: the same key with
// another request is a conflict.
func requestHash(id string, r GrantRequest, cats []string) []byte {
	b, _ := json.Marshal([]any{id, r.Purpose, r.Party, cats, r.PolicyVersion, r.ExpiresAt.UTC().UnixMicro(), normEvidence(r.Evidence)})
	h := sha256.Sum256(b)
	return h[:]
}

// Get returns a consent.
func (s *Service) Get(ctx context.Context, id string) (Consent, error) {
	if !validConsentID(id) {
		return Consent{}, fmt.Errorf("get consent: %w", ErrNotFound)
	}
	c, err := s.store.GetConsent(ctx, id)
	if err != nil {
		return Consent{}, fmt.Errorf("get consent: %w", err)
	}
	c.Status = c.EffectiveStatus(s.now())
	return c, nil
}

// lookupSubject finds a subject by its raw identifier.
func (s *Service) lookupSubject(ctx context.Context, subject string) (Subject, error) {
	id, err := NormalizeIdentifier(subject)
	if err != nil {
		return Subject{}, err
	}
	return s.store.FindSubject(ctx, s.crypto.BlindIndex([]byte(id)))
}

// ListBySubject returns a subject's consents (none for an unknown subject).
func (s *Service) ListBySubject(ctx context.Context, subject string) ([]Consent, error) {
	subj, err := s.lookupSubject(ctx, subject)
	if errors.Is(err, ErrNotFound) {
		return []Consent{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", err)
	}
	list, err := s.store.ListConsents(ctx, subj.ID)
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", err)
	}
	now := s.now()
	for i := range list {
		list[i].Status = list[i].EffectiveStatus(now)
	}
	return list, nil
}

// Withdraw withdraws a consent. Its tokens are denied at once locally and
// the revocation is published for hosts.
func (s *Service) Withdraw(ctx context.Context, id, actor string) (Consent, error) {
	if !validConsentID(id) {
		return Consent{}, fmt.Errorf("withdraw: %w", ErrNotFound)
	}
	now := s.now()
	c, err := s.store.GetConsent(ctx, id)
	if err != nil {
		return Consent{}, fmt.Errorf("withdraw: %w", err)
	}
	ev := audit.Event{At: now, Actor: actor, Action: "consent.withdraw", Subject: c.SubjectRef, Object: id,
		Details: map[string]string{"purpose": c.Purpose, "party": c.Party}}
	// Deny in the shared cache first, so other replicas refuse the
	// consent's tokens before they read the withdrawal from the log. A
	// denial of a consent that then turns out not to be active is
	// harmless; one the cache could not take is covered by the log, which
	// every process follows (WatchRevocations).
	s.deny(ctx, id)
	c, err = s.store.Withdraw(ctx, id, now, ev)
	if err != nil {
		return Consent{}, fmt.Errorf("withdraw: %w", err)
	}
	s.watch.deny(id, s.cfg.Now())
	s.revoked()
	return c, nil
}

// deny puts a consent on the shared cache's token denylist until every
// token it could have issued has expired and drops its cached
// verification, under a short deadline of its own so neither a client
// hanging up nor a stalled cache holds the withdrawal up. It is a fast
// path only: correctness comes from the revocation log, which this and
// every other process follow (WatchRevocations), and which hosts follow
// through the revocation stream.
func (s *Service) deny(ctx context.Context, consentID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), denyTimeout)
	defer cancel()
	ttl := max(s.cfg.TokenTTL, cache.ConsentTokens().TTL) + 2*s.cfg.Leeway
	err := s.cache.Set(ctx, cache.ConsentTokens(), denyKey(consentID), []byte("1"), ttl)
	if err == nil {
		err = s.cache.Delete(ctx, cache.ConsentTokens(), okKey(consentID))
	}
	if err != nil {
		s.log.WarnContext(ctx, "token denylist write failed: the revocation log covers it", "consent_id", consentID, "err", err)
	}
}

// denyTimeout bounds the cache writes of a withdrawal.
const denyTimeout = 500 * time.Millisecond

func (s *Service) revoked() {
	if s.cfg.Revoked != nil {
		s.cfg.Revoked()
	}
}

func denyKey(consentID string) string { return "deny:" + consentID }
func okKey(consentID string) string   { return "ok:" + consentID }
func policyKey(purpose string) string { return "policy:" + purpose }

// ExpireDue marks consents past their expiry as expired and denies their
// tokens; it returns how many it expired.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		expired, err := s.store.ExpireDue(ctx, s.now(), 500, func(c Consent) audit.Event {
			return audit.Event{Actor: "system", Action: "consent.expire", Subject: c.SubjectRef, Object: c.ID,
				Details: map[string]string{"purpose": c.Purpose, "party": c.Party}}
		})
		if err != nil {
			return total, fmt.Errorf("expire consents: %w", err)
		}
		// No denial needed: a token never outlives its consent.
		total += len(expired)
		if len(expired) < 500 {
			return total, nil
		}
	}
}

// RunExpiry sweeps expired consents every interval until ctx ends.
func (s *Service) RunExpiry(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.ExpireDue(ctx); err != nil {
			s.log.WarnContext(ctx, "expiry sweep failed", "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "consents expired", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Export is everything held about a subject (data-subject access request).
type Export struct {
	Subject    string        `json:"subject"`
	SubjectRef string        `json:"subject_ref"`
	CreatedAt  time.Time     `json:"created_at"`
	Consents   []Consent     `json:"consents"`
	Audit      []AuditRecord `json:"audit"`
}

// AuditRecord is an audit entry as shown to the subject.
type AuditRecord struct {
	Seq     int64             `json:"seq"`
	At      time.Time         `json:"at"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Object  string            `json:"object,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// Export returns everything held about a subject and audits the access.
func (s *Service) Export(ctx context.Context, subject, actor string) (Export, error) {
	subj, err := s.lookupSubject(ctx, subject)
	if err != nil {
		return Export{}, fmt.Errorf("export: %w", err)
	}
	if subj.DeletedAt != nil {
		return Export{}, fmt.Errorf("export: %w", ErrSubjectDeleted)
	}
	plain, err := s.crypto.Decrypt(ctx, subj.DataKeyID, subj.IdentifierEnc, subjectAAD(subj.ID))
	if err != nil {
		return Export{}, fmt.Errorf("export: decrypt identifier: %w", err)
	}
	list, err := s.store.ListConsents(ctx, subj.ID)
	if err != nil {
		return Export{}, fmt.Errorf("export: %w", err)
	}
	now := s.now()
	for i := range list {
		list[i].Status = list[i].EffectiveStatus(now)
	}
	if _, err := s.auditor.Append(ctx, audit.Event{At: now, Actor: actor, Action: "subject.export", Subject: subj.Pseudonym}); err != nil {
		return Export{}, fmt.Errorf("export: audit: %w", err)
	}
	out := Export{Subject: string(plain), SubjectRef: subj.Pseudonym, CreatedAt: subj.CreatedAt, Consents: list, Audit: []AuditRecord{}}
	if s.reader != nil {
		entries, err := s.reader(ctx, subj.Pseudonym)
		if err != nil {
			return Export{}, fmt.Errorf("export: audit entries: %w", err)
		}
		for _, e := range entries {
			out.Audit = append(out.Audit, AuditRecord{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Details: e.Details})
		}
	}
	return out, nil
}

// DeleteResult reports a subject deletion.
type DeleteResult struct {
	SubjectRef string   `json:"subject_ref"`
	Withdrawn  []string `json:"withdrawn_consents"`
	DeletedAt  string   `json:"deleted_at"`
}

// DeleteSubject erases a subject (PIPL Art. 47): its active consents are
// withdrawn, its encrypted identifier erased and its data key destroyed, so
// no copy of the ciphertext (backups included) can be read again.
func (s *Service) DeleteSubject(ctx context.Context, subject, actor string) (DeleteResult, error) {
	subj, err := s.lookupSubject(ctx, subject)
	if err != nil {
		return DeleteResult{}, fmt.Errorf("delete subject: %w", err)
	}
	if subj.DeletedAt != nil {
		return DeleteResult{}, fmt.Errorf("delete subject: %w", ErrSubjectDeleted)
	}
	now := s.now()
	ev := audit.Event{At: now, Actor: actor, Action: "subject.delete", Subject: subj.Pseudonym,
		Details: map[string]string{"data_key": "destroyed"}}
	// Shred first: if the store then fails, a retry finds the subject
	// undeleted and finishes; destroying twice is harmless.
	if err := s.crypto.DestroyDataKey(ctx, subj.DataKeyID); err != nil && !errors.Is(err, ErrKeyDestroyed) {
		return DeleteResult{}, fmt.Errorf("delete subject: destroy data key: %w", err)
	}
	withdrawn, err := s.store.DeleteSubject(ctx, subj.ID, now, ev)
	if err != nil {
		return DeleteResult{}, fmt.Errorf("delete subject: %w", err)
	}
	for _, id := range withdrawn {
		s.watch.deny(id, s.cfg.Now())
		s.deny(ctx, id)
	}
	s.revoked()
	if withdrawn == nil {
		withdrawn = []string{}
	}
	return DeleteResult{SubjectRef: subj.Pseudonym, Withdrawn: withdrawn, DeletedAt: now.Format(time.RFC3339Nano)}, nil
}

// FilterUsable reports, for each raw identifier, whether its subject has a
// usable consent for (party, purpose): PSI uses it so that only consented
// customers take part. Malformed identifiers are reported false.
func (s *Service) FilterUsable(ctx context.Context, party, purpose string, subjects []string) ([]bool, error) {
	if err := CheckParty(party); err != nil {
		return nil, err
	}
	if err := CheckPurposeID(purpose); err != nil {
		return nil, err
	}
	list, err := s.store.UsableBlindIndexes(ctx, party, purpose, s.now())
	if err != nil {
		return nil, fmt.Errorf("filter consented subjects: %w", err)
	}
	usable := make(map[string]struct{}, len(list))
	for _, bi := range list {
		usable[string(bi)] = struct{}{}
	}
	out := make([]bool, len(subjects))
	for i, subj := range subjects {
		id, err := NormalizeIdentifier(subj)
		if err != nil {
			continue
		}
		_, out[i] = usable[string(s.crypto.BlindIndex([]byte(id)))]
	}
	return out, nil
}
