package psijob

import (
	"context"
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the session protocol spoken here.
const ProtocolVersion = 1

// PointBytes is the size of an encoded ristretto255 point.
const PointBytes = 32

// PositionBytes is the size of one revealed host position on the wire (a
// big-endian uint32; MaxSetSize fits).
const PositionBytes = 4

// Limits of the protocol.
const (
	DefaultBatchSize = 4096
	MaxBatchSize     = 16384
	// MaxSetSize bounds either party's set (and so every allocation a
	// handshake can cause).
	MaxSetSize = 50_000_000
)

// OpenRequest is the guest's handshake.
type OpenRequest struct {
	Version       int
	Session       string // resume this session (empty: open a new one)
	Supersede     string // the guest's previous session of the same job, which the host ends
	HostJob       string // the host's job, when the guest was told its id
	Mode          Mode
	Purpose       string
	GuestCount    int
	BatchSize     int
	Normalization string // psi.Normalization fingerprint
}

// Validate checks the handshake's fields (not against any session).
func (r OpenRequest) Validate() error {
	switch {
	case r.Version != ProtocolVersion:
		return fmt.Errorf("%w: protocol version %d, this host speaks %d", ErrProtocol, r.Version, ProtocolVersion)
	case r.Session != "" && !ValidSessionID(r.Session):
		return fmt.Errorf("%w: malformed session id", ErrProtocol)
	case r.Supersede != "" && !ValidSessionID(r.Supersede):
		return fmt.Errorf("%w: malformed superseded session id", ErrProtocol)
	case r.HostJob != "" && !ValidJobID(r.HostJob):
		return fmt.Errorf("%w: malformed host job id", ErrProtocol)
	case !r.Mode.Valid():
		return fmt.Errorf("%w: mode must be intersection, cardinality or both", ErrProtocol)
	case r.Purpose != "" && !purposePattern.MatchString(r.Purpose):
		return fmt.Errorf("%w: malformed purpose", ErrProtocol)
	case r.GuestCount < 0 || r.GuestCount > MaxSetSize:
		return fmt.Errorf("%w: guest set size must be 0..%d", ErrProtocol, MaxSetSize)
	case r.BatchSize < 1 || r.BatchSize > MaxBatchSize:
		return fmt.Errorf("%w: batch size must be 1..%d", ErrProtocol, MaxBatchSize)
	case r.Normalization == "" || len(r.Normalization) > 200:
		return fmt.Errorf("%w: normalisation fingerprint missing or too long", ErrProtocol)
	}
	return nil
}

// OpenResponse is the host's answer to a handshake.
type OpenResponse struct {
	Session   string
	HostCount int
	TagLen    int
	BatchSize int  // the batch size both use (the host may lower the guest's)
	Resumed   bool // an existing session was resumed
}

// Peer is the host as the guest's Runner sees it. Every method must
// return within the deadline of ctx. Errors that are worth retrying (the
// network, a host that is restarting) are *PeerError with Temporary set, or
// plain errors; a refusal is a *PeerError with a Code.
type Peer interface {
	Open(ctx context.Context, r OpenRequest) (OpenResponse, error)
	// SendBatch sends the guest's blinded points of batch and returns the
	// host's tags in the same order (nil in cardinality mode).
	SendBatch(ctx context.Context, session string, batch int, points []byte) ([]byte, error)
	// ShuffledTags returns one batch of the guest's tags in the host's
	// shuffled order (cardinality mode, after every guest batch was sent).
	ShuffledTags(ctx context.Context, session string, batch int) ([]byte, error)
	// HostBatch returns one batch of the host's blinded points, shuffled.
	HostBatch(ctx context.Context, session string, batch int) ([]byte, error)
	// Reveal sends one batch of the host positions the guest matched
	// (both-learn mode): 1..BatchSize positions in the host's shuffled
	// order, ascending. Sending a batch again with the same positions is
	// harmless.
	Reveal(ctx context.Context, session string, batch int, positions []int) error
	// Finish tells the host the guest is done, with what it revealed.
	Finish(ctx context.Context, session string, f FinishRequest) error
	// Cancel ends the session at the host with a reason; code is
	// "cancelled" or a protocol error code.
	Cancel(ctx context.Context, session, code, reason string) error
}

// FinishRequest ends a session. In both-learn mode it says how many reveal
// batches (numbered 0..RevealBatches-1) and positions the guest sent, so the
// host can tell that none is missing; in the other modes both are 0.
type FinishRequest struct {
	RevealBatches int
	Revealed      int
}

// PeerDialer returns the Peer of a guest job.
type PeerDialer func(j Job) (Peer, error)

// Error codes a host answers with (PeerError.Code).
const (
	CodeSessionNotFound = "session_not_found"
	CodeSessionClosed   = "session_closed"
	CodeCancelled       = "cancelled"
	CodeProtocol        = "protocol_error"
	CodeInvalidPoint    = "invalid_point"
	CodeNoHostJob       = "no_host_job"
	CodeMismatch        = "mismatch"
	CodeNotReady        = "not_ready"
	CodeForbidden       = "peer_not_allowed"
)

// Codes a closed session carries (ClosedError.Code, Session.Code).
const (
	SessionCodeCancelled  = "cancelled"  // by either side's operator
	SessionCodeAborted    = "aborted"    // a protocol error
	SessionCodeDone       = "done"       // finished
	SessionCodeSuperseded = "superseded" // the guest opened a new session for the same job
	SessionCodeExpired    = "expired"    // idle too long
)

// PeerError is an answer of the peer that is not a success.
type PeerError struct {
	Status    int    // HTTP status, 0 for transport errors
	Code      string // machine-readable, from the peer
	Message   string // the peer's reason, safe to show
	Temporary bool   // worth retrying
	Err       error  // transport cause
}

func (e *PeerError) Error() string {
	switch {
	case e.Err != nil && e.Code == "":
		return e.Err.Error()
	case e.Message != "":
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return e.Code
}

func (e *PeerError) Unwrap() error { return e.Err }

// Sentinel errors of the protocol.
var (
	// ErrProtocol: a message broke the protocol; the session is aborted.
	ErrProtocol = errors.New("psi protocol error")
	// ErrSessionNotFound: no such session for this peer (unknown, another
	// party's, or expired).
	ErrSessionNotFound = errors.New("psi session not found")
	// ErrSessionClosed: the session was finished, cancelled or aborted.
	ErrSessionClosed = errors.New("psi session closed")
	// ErrNoHostJob: the host has no pending job for this guest.
	ErrNoHostJob = errors.New("no pending host job for this guest")
	// ErrMismatch: the guest's handshake does not fit the host's job.
	ErrMismatch = errors.New("handshake does not match the host job")
	// ErrNotReady: a request came before the session could answer it.
	ErrNotReady = errors.New("psi session not ready for this request")
	// ErrBatchTooLarge: a batch exceeds the agreed size.
	ErrBatchTooLarge = errors.New("psi batch too large")
	// ErrPeerUnavailable: the peer did not answer within the deadline.
	ErrPeerUnavailable = errors.New("psi peer unavailable")
)

// ClosedError is ErrSessionClosed with the code and reason the session
// ended with.
type ClosedError struct {
	Code, Reason string
}

func (e *ClosedError) Error() string {
	return fmt.Sprintf("session closed (%s): %s", e.Code, e.Reason)
}

// Unwrap makes errors.Is(err, ErrSessionClosed) true.
func (e *ClosedError) Unwrap() error { return ErrSessionClosed }

// batchCount returns the number of batches of a set of n in batches of bs.
func batchCount(n, bs int) int {
	if n <= 0 {
		return 0
	}
	return (n + bs - 1) / bs
}

// batchRange returns the element range of batch b.
func batchRange(n, bs, b int) (lo, hi int) {
	lo = b * bs
	hi = min(lo+bs, n)
	return lo, hi
}

// BatchLen returns the number of elements of batch b of a set of n, or -1
// when b is not a batch of the set.
func BatchLen(n, bs, b int) int {
	if b < 0 || bs <= 0 || b >= batchCount(n, bs) {
		return -1
	}
	lo, hi := batchRange(n, bs, b)
	return hi - lo
}
