// Package consent is the legal backbone of fedrisk: no party uses a data
// subject's data without a valid, specific, provable consent, and
// withdrawing is as easy as granting.
//
// It follows PIPL Art. 14, 15, 23, 29 and 47 and GDPR Art. 7.
//
// A Consent binds one subject, one purpose (with a versioned policy text) and
// one host party — PIPL Art. 23 asks for a separate consent per recipient — to
// data categories, a validity period and evidence of how it was collected.
// Every consent gets a signed receipt in the Kantara Consent Receipt /
// ISO/IEC 27560 shape, verifiable offline with the JWKS. An active consent
// yields short-lived consent tokens (RS256 JWTs) that hosts verify before they
// use a subject's data; withdrawal denies every token of the consent at once.
//
// Subject identifiers never reach the database in the clear: they are
// encrypted under a per-subject data key and found through a keyed blind
// index; deleting a subject destroys its data key (crypto-shredding). Every
// change is appended to the hash-chained audit log in the same transaction.
//
// The package holds the domain: types, rules and the Service. Storage is the
// Store interface (implemented in consent/sqlconsent); HTTP lives in
// consent/consentapi.
package consent

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Status of a consent.
type Status string

// Consent states. Expired is stored by the expiry sweep but also derived on
// read, so a consent past its expiry is never treated as active.
const (
	StatusActive     Status = "active"
	StatusWithdrawn  Status = "withdrawn"
	StatusExpired    Status = "expired"
	StatusSuperseded Status = "superseded" // replaced by a renewal under a newer policy
)

// Domain errors. The transport maps them to HTTP statuses.
var (
	ErrNotFound            = errors.New("not found")
	ErrUnknownPurpose      = errors.New("unknown purpose")
	ErrPurposeExists       = errors.New("purpose already exists")
	ErrOutdatedPolicy      = errors.New("policy version is not the purpose's current one")
	ErrConsentExists       = errors.New("an active consent for this subject, purpose and party already exists")
	ErrNotActive           = errors.New("consent is not active")
	ErrIdempotencyConflict = errors.New("idempotency key already used for a different request")
	ErrSubjectDeleted      = errors.New("subject was deleted")
	ErrInvalid             = errors.New("invalid request")
	// ErrKeyDestroyed is what Crypto returns for a shredded data key
	// (keys.ErrKeyDestroyed is wrapped into it by the wiring).
	ErrKeyDestroyed = errors.New("data key destroyed")
)

// ValidationError names the field at fault; it wraps ErrInvalid.
type ValidationError struct {
	Field, Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Purpose is a processing purpose with its current policy version.
type Purpose struct {
	ID            string `json:"id"` // e.g. credit_risk_assessment
	Description   string `json:"description"`
	PolicyVersion int    `json:"policy_version"` // current version, from 1
	PolicyURL     string `json:"policy_url,omitempty"`
	// RenewOnNewPolicy makes consents given under an older policy version
	// need renewal (no tokens) once a new version is published.
	RenewOnNewPolicy bool          `json:"renew_on_new_policy"`
	DefaultValidity  time.Duration `json:"-"`
	CreatedAt        time.Time     `json:"created_at"`
}

// Policy is one version of a purpose's policy text.
type Policy struct {
	Purpose     string    `json:"purpose"`
	Version     int       `json:"version"`
	Text        string    `json:"text"`
	PublishedAt time.Time `json:"published_at"`
}

// Evidence records how a consent was collected.
type Evidence struct {
	Channel     string    `json:"channel"`      // e.g. mobile_app, branch, web
	CollectedAt time.Time `json:"collected_at"` // when the subject consented
	Collector   string    `json:"collector"`    // who collected it (employee id, system)
	Reference   string    `json:"reference,omitempty"`
}

// Subject is a data subject as stored: only ciphertext and keyed hashes.
type Subject struct {
	ID            string // internal id, random
	BlindIndex    []byte // HMAC of the normalised identifier
	Pseudonym     string // what other parties and the audit log see
	DataKeyID     string
	IdentifierEnc []byte // identifier encrypted under the subject's data key
	CreatedAt     time.Time
	DeletedAt     *time.Time
}

// Consent is one consent record.
type Consent struct {
	ID             string     `json:"id"`
	SubjectID      string     `json:"-"`
	SubjectRef     string     `json:"subject_ref"` // the subject's pseudonym
	Purpose        string     `json:"purpose"`
	Party          string     `json:"party"` // the host party data may come from or go to
	Categories     []string   `json:"data_categories"`
	PolicyVersion  int        `json:"policy_version"`
	GrantedAt      time.Time  `json:"granted_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	Status         Status     `json:"status"`
	WithdrawnAt    *time.Time `json:"withdrawn_at,omitempty"`
	Evidence       Evidence   `json:"evidence"`
	Receipt        string     `json:"receipt"` // signed JWS
	IdempotencyKey string     `json:"-"`
	RequestHash    []byte     `json:"-"`
	NeedsRenewal   bool       `json:"needs_renewal"` // derived: policy changed and the purpose asks for renewal
	UpdatedAt      time.Time  `json:"updated_at"`
}

// EffectiveStatus is the status at now: an active consent past its expiry
// is expired even before the sweep writes it.
func (c Consent) EffectiveStatus(now time.Time) Status {
	if c.Status == StatusActive && !now.Before(c.ExpiresAt) {
		return StatusExpired
	}
	return c.Status
}

// Usable reports whether the consent may back a token at now.
func (c Consent) Usable(now time.Time) bool {
	return c.EffectiveStatus(now) == StatusActive && !c.NeedsRenewal
}

var (
	idPattern       = regexp.MustCompile(`^[a-z][a-z0-9_]{1,63}$`)
	partyPattern    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	categoryPattern = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,63}$`)
)

// NormalizeIdentifier trims and case-folds a subject identifier, so "ID123 "
// and "id123" are one subject. Identifiers are 1..256 bytes.
func NormalizeIdentifier(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if id == "" {
		return "", invalid("subject", "must not be empty")
	}
	if len(id) > 256 {
		return "", invalid("subject", "longer than 256 bytes")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return "", invalid("subject", "contains control characters")
		}
	}
	return id, nil
}

// CheckPurposeID validates a purpose id.
func CheckPurposeID(id string) error {
	if !idPattern.MatchString(id) {
		return invalid("purpose", "must be 2..64 characters of a-z, 0-9 and _, starting with a letter")
	}
	return nil
}

// CheckParty validates a party name (as in its certificates).
func CheckParty(p string) error {
	if !partyPattern.MatchString(p) {
		return invalid("party", "must be a party name: lowercase letters, digits and '-', 1..63 characters")
	}
	return nil
}

// checkText refuses invalid UTF-8, control characters (newlines and tabs
// only where multiline) and texts over max bytes: what a database cannot
// store faithfully, or a receipt should not carry.
func checkText(field, v string, max int, multiline bool) error {
	if len(v) > max {
		return invalid(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 && !(multiline && (r == '\n' || r == '\t' || r == '\r')) || r == 0x7f {
			return invalid(field, "contains control characters")
		}
	}
	return nil
}

// validConsentID reports whether id has the shape of an id this service
// issues ("cns_" and 22 base64url characters); anything else is unknown.
func validConsentID(id string) bool {
	if len(id) != 26 || !strings.HasPrefix(id, "cns_") {
		return false
	}
	for _, c := range id[4:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkCategories(cats []string) error {
	if len(cats) == 0 {
		return invalid("data_categories", "must name at least one category")
	}
	if len(cats) > 32 {
		return invalid("data_categories", "at most 32 categories")
	}
	seen := map[string]bool{}
	for _, c := range cats {
		if !categoryPattern.MatchString(c) {
			return invalid("data_categories", "%q is not a category name (a-z, 0-9, _ and .)", c)
		}
		if seen[c] {
			return invalid("data_categories", "%q listed twice", c)
		}
		seen[c] = true
	}
	return nil
}
