package consent

import (
	"context"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
)

// Store persists purposes, subjects and consents. Every method that changes
// state takes the audit event describing the change and appends it in the
// same transaction: a change and its audit entry commit together or not at
// all. Implementations: consent/sqlconsent; conformance suite:
// consent/consenttest.
type Store interface {
	CreatePurpose(ctx context.Context, p Purpose, policy Policy, ev audit.Event) error // ErrPurposeExists
	// PublishPolicy adds policy.Version (which must be current+1) and makes
	// it current.
	PublishPolicy(ctx context.Context, policy Policy, ev audit.Event) error // ErrUnknownPurpose, ErrOutdatedPolicy
	GetPurpose(ctx context.Context, id string) (Purpose, error)             // ErrUnknownPurpose
	ListPurposes(ctx context.Context) ([]Purpose, error)
	GetPolicy(ctx context.Context, purpose string, version int) (Policy, error) // ErrNotFound

	// FindSubject looks a subject up by blind index (ErrNotFound).
	FindSubject(ctx context.Context, blindIndex []byte) (Subject, error)
	GetSubject(ctx context.Context, id string) (Subject, error) // ErrNotFound

	// Grant stores c, creating subject s first when it is new (s.ID not yet
	// stored). With c.IdempotencyKey set and already used: the stored
	// consent is returned with replay=true when c.RequestHash matches,
	// ErrIdempotencyConflict otherwise. An active consent for the same
	// (subject, purpose, party) is ErrConsentExists unless supersede names
	// its id, in which case that one becomes superseded.
	Grant(ctx context.Context, s Subject, c Consent, supersede string, ev audit.Event) (stored Consent, replay bool, err error)
	// FindByIdempotencyKey returns the consent granted with key (ErrNotFound).
	FindByIdempotencyKey(ctx context.Context, key string) (Consent, error)
	GetConsent(ctx context.Context, id string) (Consent, error) // ErrNotFound
	// ListConsents returns a subject's consents, oldest first.
	ListConsents(ctx context.Context, subjectID string) ([]Consent, error)
	// ActiveConsent returns the active consent of (subject, purpose, party).
	ActiveConsent(ctx context.Context, subjectID, purpose, party string) (Consent, error) // ErrNotFound
	// Withdraw marks an active consent withdrawn at at (ErrNotActive if it
	// is not active, ErrNotFound if unknown) and returns it.
	Withdraw(ctx context.Context, id string, at time.Time, ev audit.Event) (Consent, error)
	// ExpireDue marks active consents whose expiry is before now as
	// expired, at most limit of them, appending event(c) for each; it
	// returns the expired consents.
	ExpireDue(ctx context.Context, now time.Time, limit int, event func(Consent) audit.Event) ([]Consent, error)
	// DeleteSubject marks the subject deleted, erases its encrypted
	// identifier and withdraws its active consents; it returns the ids of
	// the consents it withdrew. The caller destroys the data key.
	DeleteSubject(ctx context.Context, subjectID string, at time.Time, ev audit.Event) ([]string, error)
	// UsableBlindIndexes returns the blind indexes of every subject with a
	// usable consent (active, unexpired at now, not needing renewal) for
	// (party, purpose).
	UsableBlindIndexes(ctx context.Context, party, purpose string, now time.Time) ([][]byte, error)
}

// Auditor appends events that do not change consent state (token issued,
// verification failed, admin reads).
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}
