package psi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxSetSize bounds the number of identifiers of one party in a session.
const MaxSetSize = 1 << 30

// Defaults of Config.
const (
	DefaultBatchSize = 1 << 14
	DefaultWindow    = 4
)

var (
	// ErrProtocol reports a message that is well-formed but wrong at this
	// point of the session: unexpected type, unknown or repeated batch,
	// wrong element count. It aborts the session.
	ErrProtocol = errors.New("psi: protocol violation")
	// ErrWrongSession reports a message bound to another session.
	ErrWrongSession = errors.New("psi: message of another session")
	// ErrMismatch reports that the parties' settings disagree (protocol,
	// mode or normalisation).
	ErrMismatch = errors.New("psi: parties' settings disagree")
	// ErrAborted is returned by a role used again after it failed; it
	// wraps the original error.
	ErrAborted = errors.New("psi: session aborted")
)

// Mode says who learns what.
type Mode uint8

const (
	// ModeIntersection: the guest learns which of its identifiers the
	// host also has; the host learns only the guest's set size.
	ModeIntersection Mode = 1
	// ModeCardinality: the guest learns only how many of its identifiers
	// the host has; the host learns only the guest's set size.
	ModeCardinality Mode = 2
	// ModeBothLearn: as ModeIntersection, and then the guest tells the
	// host which of the host's (shuffled) elements matched, so the host
	// learns the intersection too. This is a disclosure by design, and in
	// the semi-honest model the host trusts the guest's report.
	ModeBothLearn Mode = 3
)

func (m Mode) String() string {
	switch m {
	case ModeIntersection:
		return "intersection"
	case ModeCardinality:
		return "cardinality"
	case ModeBothLearn:
		return "both-learn"
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Config is what both parties agree on before a session (the service's
// handshake) plus local tuning.
type Config struct {
	// Session is the session id, the same on both sides. It selects the
	// hash-to-group DST (see DST) and is bound into every message.
	Session []byte
	// Mode must be the same on both sides.
	Mode Mode
	// Normalization must be the same on both sides; the protocol checks
	// its Fingerprint but does not apply it: callers pass identifiers
	// already normalised (and, preferably, deduplicated).
	Normalization Normalization
	// BatchSize is the number of elements per message this party sends,
	// 1..MaxBatchElems; 0 means DefaultBatchSize.
	BatchSize int
	// Window is how many batches this party sends before waiting for the
	// peer to acknowledge or answer one; 0 means DefaultWindow. It bounds
	// the memory held in messages in flight.
	Window int
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Session) == 0 {
		return c, fmt.Errorf("psi: config: empty session id: %w", ErrMalformed)
	}
	switch c.Mode {
	case ModeIntersection, ModeCardinality, ModeBothLearn:
	default:
		return c, fmt.Errorf("psi: config: unknown %s: %w", c.Mode, ErrMalformed)
	}
	if err := c.Normalization.Validate(); err != nil {
		return c, err
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchElems {
		return c, fmt.Errorf("psi: config: batch size %d out of range 1..%d: %w", c.BatchSize, MaxBatchElems, ErrMalformed)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < 1 {
		return c, fmt.Errorf("psi: config: window %d below 1: %w", c.Window, ErrMalformed)
	}
	return c, nil
}

// Result is what one party learned from a finished session.
type Result struct {
	// Learned reports whether this party learned anything about the
	// intersection (the host does only in ModeBothLearn).
	Learned bool
	// Count is the number of this party's input rows in the intersection
	// (rows with duplicate identifiers each count), if Learned.
	Count int
	// Indices are those rows' positions in this party's input, ascending;
	// nil in ModeCardinality and when nothing was learned.
	Indices []int
	// PeerSize is the other party's set size, which every mode reveals.
	PeerSize int
}

// Role is one party's side of a session: a state machine driven by the
// peer's messages. It knows nothing of transports; the caller delivers
// every message it returns to the peer's Role, in order, and every
// message the peer sends to Handle.
//
// The guest speaks first (Start returns its opening messages); the host's
// Start returns nothing and every host message answers a guest message, so
// a request–response transport (the guest as client) carries the protocol
// as well as a stream does. The session ends when Done is true on both
// sides; a non-nil error from Start or Handle aborts it for good, and later
// calls return an error wrapping ErrAborted.
//
// A Role is not safe for concurrent use: the caller serialises Start,
// Handle and Result. Work inside a call uses all cores.
type Role interface {
	// Start returns the messages this role sends first.
	Start(ctx context.Context) ([]Message, error)
	// Handle consumes one message from the peer and returns the messages
	// to send in response (possibly none).
	Handle(ctx context.Context, msg Message) ([]Message, error)
	// Done reports whether this role has finished and expects nothing more.
	Done() bool
	// Result returns what this role learned; an error before Done.
	Result() (Result, error)
	// Close destroys the role's secret key. Call it when the session ends,
	// finished or not. It is idempotent.
	Close()
}

// Protocol is a PSI protocol: it makes the two roles of a session. The
// ECDH protocol of this package is one; an OT-extension protocol (KKRT,
// RR22) would be another, with its own message types and the same Role
// contract, so the service need not change.
type Protocol interface {
	// Name identifies the protocol in the session handshake.
	Name() string
	// NewGuest returns the guest role for ids (normalised identifiers).
	NewGuest(cfg Config, ids [][]byte) (Role, error)
	// NewHost returns the host role for ids.
	NewHost(cfg Config, ids [][]byte) (Role, error)
}

// Hello payload (helloBytes bytes):
//
//	0  1 protocol id
//	1  1 mode
//	2  2 reserved, zero
//	4  4 set size
//	8  4 batch size of the sender
//	12 8 first 8 bytes of SHA-256 of the normalisation fingerprint
const (
	helloBytes    = 20
	positionBytes = 4
	doneBytes     = 8
)

// hello is the decoded payload of MsgHello and MsgHelloReply.
type hello struct {
	protocol  uint8
	mode      Mode
	setSize   int
	batchSize int
	norm      [8]byte
}

func normDigest(n Normalization) [8]byte {
	sum := sha256.Sum256([]byte(n.Fingerprint()))
	var d [8]byte
	copy(d[:], sum[:])
	return d
}

func (h hello) encode() []byte {
	b := make([]byte, helloBytes)
	b[0] = h.protocol
	b[1] = byte(h.mode)
	binary.BigEndian.PutUint32(b[4:8], uint32(h.setSize))
	binary.BigEndian.PutUint32(b[8:12], uint32(h.batchSize))
	copy(b[12:20], h.norm[:])
	return b
}

// parseHello reads a hello payload and checks its ranges.
func parseHello(b []byte) (hello, error) {
	if len(b) != helloBytes {
		return hello{}, fmt.Errorf("%w: hello of %d bytes", ErrMalformed, len(b))
	}
	h := hello{
		protocol:  b[0],
		mode:      Mode(b[1]),
		setSize:   int(binary.BigEndian.Uint32(b[4:8])),
		batchSize: int(binary.BigEndian.Uint32(b[8:12])),
	}
	copy(h.norm[:], b[12:20])
	if b[2] != 0 || b[3] != 0 {
		return hello{}, fmt.Errorf("%w: hello: reserved bytes set", ErrMalformed)
	}
	if h.setSize > MaxSetSize {
		return hello{}, fmt.Errorf("%w: hello: set size %d above %d", ErrMalformed, h.setSize, MaxSetSize)
	}
	if h.batchSize < 1 || h.batchSize > MaxBatchElems {
		return hello{}, fmt.Errorf("%w: hello: batch size %d out of range 1..%d", ErrMalformed, h.batchSize, MaxBatchElems)
	}
	return h, nil
}

// batches describes how a set of size elements is cut into messages of at
// most size per: every batch is full except the last.
type batches struct{ total, per int }

func (b batches) count() int { return (b.total + b.per - 1) / b.per }

// len returns the element count of batch k.
func (b batches) len(k int) int { return min(b.per, b.total-k*b.per) }

// start returns the index of batch k's first element.
func (b batches) start(k int) int { return k * b.per }
