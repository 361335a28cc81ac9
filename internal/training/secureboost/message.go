package secureboost

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of one message (integers big-endian), the same layout as
// the hetero-LR protocol's with the two counters named for trees:
//
//	offset size field
//	0      1    format version (1)
//	1      1    type (MsgType)
//	2      4    tree
//	6      2    level
//	8      2    part (a level's gradients and histograms come in parts)
//	10     4    payload length
//	14     ...  payload, nothing after it
//
// Decode checks the version, the type and the payload length against the
// type's limit before looking at the payload; the receiving role then
// checks type, tree, level and part against its state and decodes the
// payload against the session's shapes (ring degree, moduli, rows, bins).
const (
	// FormatVersion is the first byte of every encoded message.
	FormatVersion = 1
	// HeaderBytes is the size of the fixed header.
	HeaderBytes = 14
	// MaxPayloadBytes bounds the payload of any message (64 MiB).
	MaxPayloadBytes = 64 << 20
	// MaxMessageBytes bounds an encoded message; a transport can refuse
	// anything longer before reading it.
	MaxMessageBytes = HeaderBytes + MaxPayloadBytes
	// MaxReasonBytes bounds the reason of an Abort.
	MaxReasonBytes = 1024
)

var (
	// ErrMalformed reports a message or payload that does not have the
	// shape its type and the session require.
	ErrMalformed = errors.New("secureboost: malformed message")
	// ErrOversized reports a message over its size limit.
	ErrOversized = errors.New("secureboost: oversized message")
	// ErrUnknownType reports a message type this version does not know.
	ErrUnknownType = errors.New("secureboost: unknown message type")
	// ErrProtocol reports a well-formed message that is wrong at this
	// point of the session: unexpected type, tree, level or part, or a
	// decision the receiver cannot carry out. It aborts the run.
	ErrProtocol = errors.New("secureboost: protocol violation")
	// ErrAborted reports that the peer aborted the session.
	ErrAborted = errors.New("secureboost: session aborted by peer")
	// ErrMismatch reports that the parties' settings or data disagree
	// (aligned identifiers, split, hyper-parameters, checkpoints).
	ErrMismatch = errors.New("secureboost: parties disagree")
	// ErrParams reports parameters a party refuses (insecure, out of range)
	// or that cannot hold the computation.
	ErrParams = errors.New("secureboost: unacceptable parameters")
	// ErrBound reports a value outside the bounds the session was sized for.
	ErrBound = errors.New("secureboost: value out of bounds")
)

// MsgType is the kind of a protocol message. "G→H" is guest to host.
type MsgType uint8

// The message types, in the order a run uses them.
const (
	MsgHello       MsgType = 1  // G→H: session, model, parameters, hyper-parameters, data digest (JSON)
	MsgHelloReply  MsgType = 2  // H→G: row counts, bins per feature, histogram noise (JSON)
	MsgSetup       MsgType = 3  // G→H: packing stride and noise budget (JSON)
	MsgPublicKey   MsgType = 4  // G→H: CKKS public key
	MsgGradients   MsgType = 5  // G→H (tree, level, part): partitions the host lacks; [[g·2^s + h]] of the computed nodes' rows
	MsgHistograms  MsgType = 6  // H→G (tree, level, part): [[bin sums]] of the computed nodes, re-randomised, flooded
	MsgSplits      MsgType = 7  // G→H (tree, level): per node leaf / split elsewhere / split here at (feature, bin)
	MsgSplitReply  MsgType = 8  // H→G (tree, level): split ids and partitions of this host's splits
	MsgTreeDone    MsgType = 9  // G→H (tree): the tree is grown
	MsgRoutes      MsgType = 10 // H→G (tree): routing bits of the validation rows at this host's splits of the tree
	MsgTreeEnd     MsgType = 11 // G→H (tree): keep the trees so far? stop?
	MsgFinish      MsgType = 12 // G→H: how many trees the model keeps (JSON)
	MsgTestRoutes  MsgType = 13 // H→G: routing bits of the test rows at every kept split
	MsgFinishReply MsgType = 14 // H→G: digest of the host's half (JSON)
	MsgAbort       MsgType = 15 // either way: the sender gave up; payload is a short reason
)

func (t MsgType) String() string {
	names := [...]string{"", "hello", "hello-reply", "setup", "public-key", "gradients", "histograms",
		"splits", "split-reply", "tree-done", "routes", "tree-end", "finish", "test-routes", "finish-reply", "abort"}
	if int(t) > 0 && int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// maxPayload is the payload limit of each type.
func maxPayload(t MsgType) (int, bool) {
	switch t {
	case MsgHello, MsgSetup, MsgFinish, MsgFinishReply:
		return 64 << 10, true
	case MsgHelloReply:
		return 1 << 20, true
	case MsgTreeDone:
		return 0, true
	case MsgTreeEnd:
		return 1, true
	case MsgAbort:
		return MaxReasonBytes, true
	case MsgPublicKey, MsgGradients, MsgHistograms, MsgSplits, MsgSplitReply, MsgRoutes, MsgTestRoutes:
		return MaxPayloadBytes, true
	}
	return 0, false
}

// Message is one protocol message.
type Message struct {
	Type    MsgType
	Tree    uint32
	Level   uint16
	Part    uint16
	Payload []byte
}

func (m Message) String() string {
	return fmt.Sprintf("%s(tree %d, level %d, part %d, %d bytes)", m.Type, m.Tree, m.Level, m.Part, len(m.Payload))
}

// Encode returns the wire form of m.
func Encode(m Message) ([]byte, error) {
	limit, ok := maxPayload(m.Type)
	if !ok {
		return nil, fmt.Errorf("encode: %w %d", ErrUnknownType, uint8(m.Type))
	}
	if len(m.Payload) > limit {
		return nil, fmt.Errorf("encode: %w: %s payload of %d bytes, limit %d", ErrOversized, m.Type, len(m.Payload), limit)
	}
	b := make([]byte, HeaderBytes, HeaderBytes+len(m.Payload))
	putHeader(b, m)
	return append(b, m.Payload...), nil
}

// putHeader writes m's header into b[:HeaderBytes].
func putHeader(b []byte, m Message) {
	b[0] = FormatVersion
	b[1] = byte(m.Type)
	binary.BigEndian.PutUint32(b[2:], m.Tree)
	binary.BigEndian.PutUint16(b[6:], m.Level)
	binary.BigEndian.PutUint16(b[8:], m.Part)
	binary.BigEndian.PutUint32(b[10:], uint32(len(m.Payload)))
}

// Decode parses one encoded message. It fails with ErrMalformed (short
// input, wrong version, length mismatch), ErrUnknownType or ErrOversized,
// never panics, and checks the length before using the payload. The
// returned Payload aliases b.
func Decode(b []byte) (Message, error) {
	if len(b) < HeaderBytes {
		return Message{}, fmt.Errorf("decode: %d bytes, header needs %d: %w", len(b), HeaderBytes, ErrMalformed)
	}
	if b[0] != FormatVersion {
		return Message{}, fmt.Errorf("decode: format version %d, want %d: %w", b[0], FormatVersion, ErrMalformed)
	}
	m := Message{
		Type:  MsgType(b[1]),
		Tree:  binary.BigEndian.Uint32(b[2:]),
		Level: binary.BigEndian.Uint16(b[6:]),
		Part:  binary.BigEndian.Uint16(b[8:]),
	}
	n := binary.BigEndian.Uint32(b[10:])
	limit, ok := maxPayload(m.Type)
	if !ok {
		return Message{}, fmt.Errorf("decode: %w %d", ErrUnknownType, b[1])
	}
	if uint64(n) > uint64(limit) {
		return Message{}, fmt.Errorf("decode: %s payload of %d bytes, limit %d: %w", m.Type, n, limit, ErrOversized)
	}
	if uint64(len(b)-HeaderBytes) != uint64(n) {
		return Message{}, fmt.Errorf("decode: %s header says %d payload bytes, have %d: %w", m.Type, n, len(b)-HeaderBytes, ErrMalformed)
	}
	m.Payload = b[HeaderBytes:len(b):len(b)]
	return m, nil
}
