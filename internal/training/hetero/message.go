package hetero

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of one message (integers big-endian):
//
//	offset size field
//	0      1    format version (1)
//	1      1    type (MsgType)
//	2      4    epoch
//	6      4    batch
//	10     4    payload length
//	14     ...  payload, nothing after it
//
// Decode checks the version, the type, and the payload length against the
// type's limits before looking at the payload; the role that receives the
// message then checks the type, epoch and batch against its state and
// decodes the payload against the session's shapes (ring degree, moduli,
// feature and row counts), so every message is checked twice.
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
)

var (
	// ErrMalformed reports a message or payload that does not have the
	// shape its type and the session require.
	ErrMalformed = errors.New("hetero: malformed message")
	// ErrOversized reports a message over its size limit.
	ErrOversized = errors.New("hetero: oversized message")
	// ErrUnknownType reports a message type this version does not know.
	ErrUnknownType = errors.New("hetero: unknown message type")
	// ErrProtocol reports a well-formed message that is wrong at this point
	// of the session: unexpected type, epoch or batch. It aborts the run.
	ErrProtocol = errors.New("hetero: protocol violation")
	// ErrAborted reports that the peer aborted the session.
	ErrAborted = errors.New("hetero: session aborted by peer")
	// ErrMismatch reports that the parties' settings or data disagree
	// (aligned identifiers, split, parameters).
	ErrMismatch = errors.New("hetero: parties disagree")
	// ErrParams reports parameters a party refuses (insecure or out of
	// range) or that cannot hold the computation.
	ErrParams = errors.New("hetero: unacceptable parameters")
	// ErrBound reports a value outside the fixed-point bounds the session
	// was sized for (a diverging run or unscaled features).
	ErrBound = errors.New("hetero: value out of bounds")
)

// MsgType is the kind of a protocol message. "G→H" is guest to host.
type MsgType uint8

// The message types, in the order a run uses them.
const (
	MsgHello       MsgType = 1  // G→H: session, model id, parameters, hyper-parameters, data digest (JSON)
	MsgHelloReply  MsgType = 2  // H→G: host feature count, row counts, data digest, X25519 key (JSON)
	MsgPublicKey   MsgType = 3  // G→H: CKKS public key, at the level of returned ciphertexts
	MsgHostKeys    MsgType = 4  // G→H (≥ 2 hosts): every host's X25519 key
	MsgSeedShare   MsgType = 5  // host 0→G: sealed mask seeds for hosts 1..; G→host k: its sealed seed
	MsgConstants   MsgType = 6  // G→H, batch k: [[class weights]] (and, to host 0, [[c⊙X_A]])
	MsgReady       MsgType = 7  // H→G: constants stored, training can start
	MsgScores      MsgType = 8  // H→G, (epoch, batch): masked partial scores u_h + m_h
	MsgGuestTerm   MsgType = 9  // host 0→G, (epoch, batch): [[(c⊙X_A)ᵀ·m]], re-randomised
	MsgResidual    MsgType = 10 // G→H, (epoch, batch): [[c⊙(2 + u_A + Σu + m − 4y)]]
	MsgGradient    MsgType = 11 // H→G, (epoch, batch): [[X_hᵀ·d + R]], re-randomised, masked
	MsgDecrypted   MsgType = 12 // G→H, (epoch, batch): decrypted X_hᵀ·d + R, noise-flooded
	MsgEvalScores  MsgType = 13 // H→G, (epoch, set): partial scores of validation/test rows, zero-sum masked across hosts
	MsgEpochEnd    MsgType = 14 // G→H, epoch: keep these weights? stop?
	MsgFinish      MsgType = 15 // G→H: best epoch; build the model (JSON)
	MsgFinishReply MsgType = 16 // H→G: host model digest (JSON)
	MsgAbort       MsgType = 17 // either way: the sender gave up; payload is a short reason
)

func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgHelloReply:
		return "hello-reply"
	case MsgPublicKey:
		return "public-key"
	case MsgHostKeys:
		return "host-keys"
	case MsgSeedShare:
		return "seed-share"
	case MsgConstants:
		return "constants"
	case MsgReady:
		return "ready"
	case MsgScores:
		return "scores"
	case MsgGuestTerm:
		return "guest-term"
	case MsgResidual:
		return "residual"
	case MsgGradient:
		return "gradient"
	case MsgDecrypted:
		return "decrypted"
	case MsgEvalScores:
		return "eval-scores"
	case MsgEpochEnd:
		return "epoch-end"
	case MsgFinish:
		return "finish"
	case MsgFinishReply:
		return "finish-reply"
	case MsgAbort:
		return "abort"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// maxPayload is the payload limit of each type.
func maxPayload(t MsgType) (int, bool) {
	switch t {
	case MsgHello, MsgHelloReply, MsgFinish, MsgFinishReply:
		return 64 << 10, true
	case MsgHostKeys, MsgSeedShare:
		return 64 << 10, true
	case MsgReady:
		return 0, true
	case MsgEpochEnd:
		return epochEndBytes, true
	case MsgAbort:
		return MaxReasonBytes, true
	case MsgPublicKey, MsgConstants, MsgScores, MsgGuestTerm, MsgResidual, MsgGradient, MsgDecrypted, MsgEvalScores:
		return MaxPayloadBytes, true
	}
	return 0, false
}

// MaxReasonBytes bounds the reason of an Abort.
const MaxReasonBytes = 1024

// Message is one protocol message.
type Message struct {
	Type    MsgType
	Epoch   uint32
	Batch   uint32
	Payload []byte
}

func (m Message) String() string {
	return fmt.Sprintf("%s(epoch %d, batch %d, %d bytes)", m.Type, m.Epoch, m.Batch, len(m.Payload))
}

func (m Message) check() error {
	limit, ok := maxPayload(m.Type)
	if !ok {
		return fmt.Errorf("%w %d", ErrUnknownType, uint8(m.Type))
	}
	if len(m.Payload) > limit {
		return fmt.Errorf("%w: %s payload of %d bytes, limit %d", ErrOversized, m.Type, len(m.Payload), limit)
	}
	return nil
}

// Encode returns the wire form of m.
func Encode(m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	b := make([]byte, HeaderBytes, HeaderBytes+len(m.Payload))
	b[0] = FormatVersion
	b[1] = byte(m.Type)
	binary.BigEndian.PutUint32(b[2:], m.Epoch)
	binary.BigEndian.PutUint32(b[6:], m.Batch)
	binary.BigEndian.PutUint32(b[10:], uint32(len(m.Payload)))
	return append(b, m.Payload...), nil
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
		Epoch: binary.BigEndian.Uint32(b[2:]),
		Batch: binary.BigEndian.Uint32(b[6:]),
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

// epochEndBytes is the payload of EpochEnd: one flags byte.
const epochEndBytes = 1
