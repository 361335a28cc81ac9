package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Roles: which half of a model this party holds.
const (
	RoleGuest = "guest"
	RoleHost  = "host"
)

// Labels a model's versions can carry.
const (
	LabelStable = "stable"
	LabelCanary = "canary"
)

// Actions of a label change.
const (
	ActionPromote  = "promote"
	ActionRollback = "rollback"
)

// Limits.
const (
	// MaxModelIDLen bounds a model id.
	MaxModelIDLen = 128
	// MaxCardBytes bounds a model card.
	MaxCardBytes = 1 << 20
	// maxVersion bounds a version number (18 decimal digits fit in int64).
	maxVersion = 999_999_999_999_999_999
)

// Sentinel errors; the transport maps them to 404, 409 and 400.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrNoRollback is a rollback of a label that has no earlier version
	// to go back to. It is an ErrConflict.
	ErrNoRollback = fmt.Errorf("%w: nothing to roll back to", ErrConflict)
)

// Entry is one registered half of one model version.
type Entry struct {
	ModelID string
	Version string
	Role    string // RoleGuest or RoleHost
	// Digest is the hex SHA-256 of Half.
	Digest string
	// Half is the exported JSON document; empty in listings. Shared: do
	// not modify.
	Half []byte
	// Card is the JSON model card; nil when none was registered.
	Card []byte
	// Labels are the labels pointing at this version now, sorted.
	Labels       []string
	Created      time.Time
	RegisteredBy string
}

// LabelChange is one move of a label, as kept in the label's history.
type LabelChange struct {
	ModelID string
	Label   string
	Action  string // ActionPromote or ActionRollback
	Version string // where the label points after the change
	// Previous is where it pointed before ("" for nowhere). A Promote of
	// the version the label already points at returns a change with
	// Previous == Version, which is not recorded.
	Previous string
	Actor    string
	At       time.Time
}

// Changed reports whether c moved the label.
func (c LabelChange) Changed() bool { return c.Previous != c.Version }

// Model is a model id with every version this party holds.
type Model struct {
	ID string
	// Versions are in ascending version order (guest before host within
	// a version), without their halves.
	Versions []Entry
	// Labels maps each set label to its version.
	Labels map[string]string
	// History is every label change, oldest first (only from Model).
	History []LabelChange
}

// Store keeps the registry (registry/sqlregistry). Every method that
// writes does so atomically.
type Store interface {
	// NextVersion returns the next version number of modelID: one more
	// than every number handed out or registered before, creating the
	// model id if needed.
	NextVersion(ctx context.Context, modelID string, at time.Time) (int64, error)
	// Insert stores e (with Half, Digest and Created set). If (ModelID,
	// Version, Role) exists already it returns nil when the stored digest
	// equals e.Digest and ErrConflict otherwise, storing nothing.
	Insert(ctx context.Context, e Entry) error
	// Entry returns one half of a version (role "" means either: the
	// guest's if both exist), with Half when withHalf; Labels unset.
	// ErrNotFound when absent.
	Entry(ctx context.Context, modelID, version, role string, withHalf bool) (Entry, error)
	// Versions returns a model's halves without Half, ordered as in
	// Model.Versions; ErrNotFound when the model id is unknown.
	Versions(ctx context.Context, modelID string) ([]Entry, error)
	// ModelIDs returns every model id with at least one version, sorted.
	ModelIDs(ctx context.Context) ([]string, error)
	// Labels returns where each set label of modelID points (empty for
	// an unknown model).
	Labels(ctx context.Context, modelID string) (map[string]string, error)
	// SetLabel points c.Label at c.Version, appends the change to the
	// history and returns it with Previous set; all in one transaction.
	// ErrNotFound when the model or version is unknown. When the label
	// already points at c.Version it changes nothing and returns c with
	// Previous == Version.
	SetLabel(ctx context.Context, c LabelChange) (LabelChange, error)
	// Rollback moves c.Label back to RollbackTarget of its history and
	// records the change (c.Action is ActionRollback), in one transaction.
	// ErrNotFound for an unknown model, ErrNoRollback when there is no
	// target.
	Rollback(ctx context.Context, c LabelChange) (LabelChange, error)
	// History returns every label change of modelID, oldest first.
	History(ctx context.Context, modelID string) ([]LabelChange, error)
}

// RollbackTarget returns the version a rollback of a label moves it to,
// given the label's history oldest first: the Previous of the latest
// promotion that no later rollback has undone. ok is false when there is
// none (no promotion left, or it was the label's first).
func RollbackTarget(history []LabelChange) (version string, ok bool) {
	undone := 0
	for i := len(history) - 1; i >= 0; i-- {
		switch history[i].Action {
		case ActionRollback:
			undone++
		case ActionPromote:
			if undone > 0 {
				undone--
				continue
			}
			return history[i].Previous, history[i].Previous != ""
		}
	}
	return "", false
}

// ValidModelID checks a model id: 1 to MaxModelIDLen characters from
// [A-Za-z0-9._-], starting with a letter or digit.
func ValidModelID(id string) error {
	if id == "" || len(id) > MaxModelIDLen {
		return fmt.Errorf("%w: model id must be 1 to %d characters", ErrInvalid, MaxModelIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: model id %.40q: use letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalid, id)
		}
	}
	return nil
}

// ParseVersion checks a version — the decimal text of a positive integer
// without leading zeros ("1", "2", ...) — and returns its number.
func ParseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > maxVersion || strconv.FormatInt(n, 10) != v {
		return 0, fmt.Errorf("%w: version %.40q: want a positive integer such as \"1\"", ErrInvalid, v)
	}
	return n, nil
}

// ValidLabel checks a label name.
func ValidLabel(label string) error {
	if label != LabelStable && label != LabelCanary {
		return fmt.Errorf("%w: label %.40q: want %q or %q", ErrInvalid, label, LabelStable, LabelCanary)
	}
	return nil
}

// ValidRole checks a role name.
func ValidRole(role string) error {
	if role != RoleGuest && role != RoleHost {
		return fmt.Errorf("%w: role %.40q: want %q or %q", ErrInvalid, role, RoleGuest, RoleHost)
	}
	return nil
}
