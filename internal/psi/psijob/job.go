// Package psijob runs private set intersection jobs between two parties on
// top of the cryptographic core in internal/psi.
//
// The guest's Runner drives a job through a Peer batch by batch with a
// checkpoint after every batch, and the host's Sessions answer a registered
// guest.
//
// The protocol of one session (ECDH-PSI over ristretto255):
//
//  1. Open: the guest sends its set size, batch size, mode, purpose and
//     the fingerprint of its normalisation; the host refuses a mismatch
//     (its job must have been created for the same mode, except that an
//     intersection job also serves a cardinality guest), binds the session
//     to the guest's party and answers with an unguessable session id, its
//     own set size and the tag length psi.TagBytes(n, m).
//  2. Guest batches: the guest sends A_i = a·H(x_i), ≤ BatchSize points per
//     message; the host answers T(b·A_i) in the same order (in cardinality
//     mode it keeps the tags and later serves them in a shuffled order, so
//     the guest cannot tell which of its elements matched).
//  3. Host batches: the host serves B_j = b·H(y_π(j)) in a cryptographically
//     shuffled order π, computed lazily per batch; the guest computes
//     T(a·B_j) and matches it against its tags.
//  4. Both-learn mode only (ModeBoth): the guest sends the positions j (in
//     the host's shuffled order) that matched, ascending, ≤ BatchSize per
//     message; each reveal batch is idempotent (a replay with the same
//     content is answered again, other content aborts the session) and a
//     position outside 0..m-1 aborts the session.
//  5. Finish (with, in both-learn mode, the number of reveal batches and
//     positions, which the host checks), or Cancel, with a reason, from
//     either side. In both-learn mode the host then maps the positions
//     through π to its own rows and stores its result like the guest's.
//
// Who learns what: in ModeIntersection the guest learns which of its rows
// the host has and the host only the guest's set size; in ModeCardinality
// the guest learns only how many; in ModeBoth the guest learns its rows of
// the intersection and then deliberately reveals the intersection to the
// host, which is the purpose of that mode: both parties end with their own
// rows of it. The model is semi-honest: the host believes the guest's
// report, so a malicious guest could claim fewer matches than it found (or
// none) and the host cannot tell; it can detect only positions that do not
// exist, repeated positions and more positions than the guest has
// elements. A host that must not depend on the guest's honesty runs an
// intersection job as the guest instead.
//
// Everything a restart needs survives in the Store: the guest's tags of
// every finished batch, the matches (and, in both-learn mode, the matched
// host positions) of every finished host batch, the reveal batches the host
// acknowledged, and — when the core can marshal keys — both session keys
// and the host's permutations, encrypted with the node's envelope
// encryption. A job that dies resumes from its last finished batch;
// without persistable keys it starts a new session from batch 0.
//
// This package holds no net/http: the HTTP peer protocol and the client
// API live in psiapi, the SQL store in sqlpsi, the wiring in psinode.
package psijob

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Role is the side a job plays.
type Role string

// Roles.
const (
	RoleGuest Role = "guest" // learns the intersection; drives the protocol
	RoleHost  Role = "host"  // answers the guest's session
)

// Status is where a job is in its life.
type Status string

// Statuses. Done, failed and cancelled are final.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusDone      Status = "done"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is a final status.
func (s Status) Final() bool {
	return s == StatusDone || s == StatusFailed || s == StatusCancelled
}

// Mode is who learns what.
type Mode string

// Modes.
const (
	ModeIntersection Mode = "intersection" // the guest learns which of its identifiers match
	ModeCardinality  Mode = "cardinality"  // the guest learns only how many match
	// ModeBoth: the guest learns which of its identifiers match and
	// reveals the matches to the host, which learns its own rows of the
	// intersection too (semi-honest: it trusts the guest's report).
	ModeBoth Mode = "both"
)

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool {
	return m == ModeIntersection || m == ModeCardinality || m == ModeBoth
}

// serves reports whether a host job of mode m may serve a guest asking for
// mode guest: the same mode, or an intersection job a cardinality guest
// (who learns less).
func (m Mode) serves(guest Mode) bool {
	return m == guest || (m == ModeIntersection && guest == ModeCardinality)
}

// Input kinds.
const (
	InputCSV   = "csv"
	InputTable = "table"
)

// Input describes where a job's identifiers come from.
type Input struct {
	Kind   string // InputCSV or InputTable
	Path   string // CSV: absolute path of a file with a header row
	Table  string // table of the node's database
	Column string // CSV header name or table column
}

// String describes the input without identifiers.
func (in Input) String() string {
	if in.Kind == InputTable {
		return fmt.Sprintf("table %s column %s", in.Table, in.Column)
	}
	return fmt.Sprintf("csv %s column %s", in.Path, in.Column)
}

// PeerRef names the other party of a job.
type PeerRef struct {
	Party string // its name, as in its certificate
	URL   string // base URL of its psi service (guest only)
}

// Job is one PSI run at one party.
type Job struct {
	ID            string
	Role          Role
	Peer          PeerRef
	PeerJob       string // guest: the host's job id, when the host's operator gave it
	Status        Status
	Mode          Mode
	Purpose       string
	Input         Input
	Normalization psi.Normalization
	BatchSize     int

	// Set sizes and input statistics.
	RowsRead   int64 // data rows read from the input
	LocalCount int64 // unique identifiers that take part
	PeerCount  int64 // the peer's set size (from the handshake)
	Duplicates int64 // rows whose normalised identifier repeated an earlier one
	Invalid    int64 // rows whose identifier failed normalisation (or was empty)
	Excluded   int64 // identifiers without an active consent for (peer, purpose)

	// Progress.
	DoneItems  int64
	TotalItems int64
	Rate       float64 // items per second of the current run

	IntersectionSize *int64 // set when done
	Error            string // why it failed or was cancelled

	// Session state (internal).
	Session     string // the host's session id
	TagLen      int
	InputDigest []byte // digest of the element list the session was opened on
	KeyID       string // data key of KeyEnc and of the result identifiers (guest; host in ModeBoth)
	KeyEnc      []byte // the guest's session key, encrypted (nil when not persistable)
	Owner       string // the runner holding the lease
	LeaseUntil  time.Time

	CreatedBy  string
	CreatedAt  time.Time
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
}

// ETA estimates the time left from the rate of the current run; 0 when
// unknown or finished.
func (j Job) ETA() time.Duration {
	if j.Status.Final() || j.Rate <= 0 || j.TotalItems <= j.DoneItems {
		return 0
	}
	return time.Duration(float64(j.TotalItems-j.DoneItems) / j.Rate * float64(time.Second)).Round(time.Second)
}

// Sentinel errors of the job API.
var (
	ErrNotFound     = errors.New("psi job not found")
	ErrInvalid      = errors.New("invalid psi job")
	ErrFinal        = errors.New("psi job already finished")
	ErrNotDone      = errors.New("psi job has no result yet")
	ErrNoRows       = errors.New("a cardinality job has no rows")
	ErrNoConsent    = errors.New("consent filter unavailable")
	ErrNotClaimable = errors.New("psi job is not claimable")
)

// ValidationError names the field a request got wrong; it wraps ErrInvalid.
type ValidationError struct {
	Field, Msg string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	identPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	purposePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{1,63}$`)
	partyPattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	jobIDPattern   = regexp.MustCompile(`^psi_[0-9a-f]{20}$`)
	sessionPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// ValidIdent reports whether s is a safe SQL identifier (table or column).
func ValidIdent(s string) bool { return identPattern.MatchString(s) }

// ValidJobID reports whether s has the shape of a job id.
func ValidJobID(s string) bool { return jobIDPattern.MatchString(s) }

// ValidSessionID reports whether s has the shape of a session id.
func ValidSessionID(s string) bool { return sessionPattern.MatchString(s) }

func newJobID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "psi_" + hex.EncodeToString(b[:]), nil
}

// NewSessionID returns 128 random bits in hex: unguessable.
func NewSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
