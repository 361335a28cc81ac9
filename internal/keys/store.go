package keys

import (
	"context"
	"time"
)

// Store keeps the Manager's key material. Its methods are atomic; the
// conditional ones return ErrConflict when the database no longer is in the
// state the caller expected (another node acted first), and change nothing.
// keystest.Run is its conformance suite.
type Store interface {
	KEKStore
	DataKeyStore
	SigningKeyStore
}

// KEKStore keeps the versions of the key-encryption key.
type KEKStore interface {
	// KEKs returns every version, lowest first.
	KEKs(ctx context.Context) ([]KEKRecord, error)
	// AddKEK stores k as the active version; the active version k.Version-1,
	// if any, becomes retiring in the same transaction. It fails with
	// ErrRotationInProgress while any version is retiring and with
	// ErrConflict when k.Version is not exactly one above the active version.
	AddKEK(ctx context.Context, k KEKRecord) error
	// RetireKEK marks a retiring version retired and erases its material,
	// provided no live data key is wrapped by it; otherwise ErrConflict.
	RetireKEK(ctx context.Context, version int, at time.Time) error
	// DataKeyCounts returns the number of live (not destroyed) data keys
	// per KEK version; versions without any are absent.
	DataKeyCounts(ctx context.Context) (map[int]int, error)
}

// DataKeyStore keeps the wrapped data keys.
type DataKeyStore interface {
	// InsertDataKey stores a new data key, provided d.KEKVersion is the
	// active KEK; otherwise, or when the id exists, ErrConflict.
	InsertDataKey(ctx context.Context, d DataKeyRecord) error
	// DataKey returns one data key (Wrapped is nil once destroyed), or
	// ErrUnknownKey.
	DataKey(ctx context.Context, id string) (DataKeyRecord, error)
	// DestroyDataKey erases the wrapped key and records when (the first
	// time); ErrUnknownKey when there is no such key.
	DestroyDataKey(ctx context.Context, id string, at time.Time) error
	// StaleDataKeys returns up to limit live data keys wrapped by a KEK
	// version below the given one, in no particular order.
	StaleDataKeys(ctx context.Context, below, limit int) ([]DataKeyRecord, error)
	// RewrapDataKeys replaces wrapped keys in one transaction. A row is only
	// changed when it is still live and still wrapped by r.From, so a key
	// destroyed meanwhile stays destroyed; it returns the rows changed. Every
	// r.To must be the active KEK, otherwise ErrConflict and nothing changes.
	RewrapDataKeys(ctx context.Context, rs []Rewrap) (int, error)
}

// SigningKeyStore keeps the token and receipt signing keys.
type SigningKeyStore interface {
	// SigningKeys returns every signing key, oldest first.
	SigningKeys(ctx context.Context) ([]SigningKeyRecord, error)
	// SigningKey returns one key by kid, or ErrUnknownKey.
	SigningKey(ctx context.Context, kid string) (SigningKeyRecord, error)
	// InitSigningKeys stores the first current and next keys in one
	// transaction; ErrConflict when a current or next key already exists.
	InitSigningKeys(ctx context.Context, current, next SigningKeyRecord) error
	// RotateSigningKeys retires the current key (erasing its private half),
	// promotes the next key and stores newNext as next, in one transaction;
	// ErrConflict when current or next are no longer in those states.
	RotateSigningKeys(ctx context.Context, current, next string, newNext SigningKeyRecord, at time.Time) error
}

// KEKRecord is one KEK version as stored.
type KEKRecord struct {
	Version   int
	State     KEKState
	Wrapped   []byte // sealed by the root-wrapping key; nil once retired
	CreatedAt time.Time
	RetiredAt time.Time // zero unless retired
}

// DataKeyRecord is one data key as stored.
type DataKeyRecord struct {
	ID          string
	KEKVersion  int
	Wrapped     []byte // sealed by KEK KEKVersion; nil once destroyed
	CreatedAt   time.Time
	DestroyedAt time.Time // zero unless destroyed
}

// Rewrap moves one data key from KEK version From to version To.
type Rewrap struct {
	ID       string
	From, To int
	Wrapped  []byte
}

// SigningKeyRecord is one signing key as stored.
type SigningKeyRecord struct {
	Kid       string
	State     SigningState
	Public    []byte // PKIX DER
	Private   []byte // PKCS#8 DER sealed by the root-wrapping key; nil once retired
	CreatedAt time.Time
	RetiredAt time.Time // zero unless retired
}

// KEKState is the life-cycle state of a KEK version.
type KEKState string

// KEK states.
const (
	KEKActive   KEKState = "active"   // wraps new data keys; exactly one
	KEKRetiring KEKState = "retiring" // still unwraps; its data keys are being re-wrapped
	KEKRetired  KEKState = "retired"  // no data key uses it; material erased
)

// SigningState is the life-cycle state of a signing key.
type SigningState string

// Signing key states.
const (
	SigningNext    SigningState = "next"    // published, signs nothing yet
	SigningCurrent SigningState = "current" // signs tokens and receipts
	SigningRetired SigningState = "retired" // verifies only; private half erased
)
