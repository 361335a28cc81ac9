package psi

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of one message (all integers big-endian):
//
//	offset size field
//	0      1    format version (1)
//	1      1    type (MsgType)
//	2      16   session tag (SessionTagOf(session id))
//	18     4    batch index
//	22     4    element count
//	26     2    element length in bytes
//	28     ...  payload: count × element length bytes, nothing after it
//
// Each type fixes its element length (or, for tags, a range) and its count
// range; Decode checks all of it, so a decoded Message always has the shape
// its type promises.
const (
	// FormatVersion is the first byte of every encoded message.
	FormatVersion = 1
	// HeaderBytes is the size of the fixed header.
	HeaderBytes = 28
	// MaxBatchElems bounds the element count of one message.
	MaxBatchElems = 1 << 16
	// MaxPayloadBytes bounds the payload of one message (4 MiB).
	MaxPayloadBytes = 4 << 20
	// MaxMessageBytes bounds an encoded message; transports can refuse
	// anything longer before reading it.
	MaxMessageBytes = HeaderBytes + MaxPayloadBytes
)

var (
	// ErrTruncated reports an encoded message shorter than its header says.
	ErrTruncated = errors.New("psi: truncated message")
	// ErrOversized reports a message over the size limits, or with bytes
	// after its payload.
	ErrOversized = errors.New("psi: oversized message")
	// ErrUnknownType reports a message type this version does not know.
	ErrUnknownType = errors.New("psi: unknown message type")
)

// MsgType is the kind of a protocol message.
type MsgType uint8

// The message types. "G→H" is guest to host.
const (
	MsgHello       MsgType = 1 // G→H: protocol, mode, set size, batch size, normalisation
	MsgHelloReply  MsgType = 2 // H→G: the same fields for the host
	MsgGuestPoints MsgType = 3 // G→H: a batch of a·H(x_i)
	MsgHostTags    MsgType = 4 // H→G: tags of b·a·H(x_i) (same batch, same order; shuffled in cardinality mode)
	MsgHostPoints  MsgType = 5 // H→G: a batch of b·H(y_π(j))
	MsgAck         MsgType = 6 // G→H or H→G: batch received (flow control), no payload
	MsgReveal      MsgType = 7 // G→H: matched host positions (both-learn mode)
	MsgDone        MsgType = 8 // G→H: the guest finished; counts of what it revealed
)

func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgHelloReply:
		return "hello-reply"
	case MsgGuestPoints:
		return "guest-points"
	case MsgHostTags:
		return "host-tags"
	case MsgHostPoints:
		return "host-points"
	case MsgAck:
		return "ack"
	case MsgReveal:
		return "reveal"
	case MsgDone:
		return "done"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// shape is what a type allows: element length range and count range.
type shape struct {
	minElem, maxElem   int
	minCount, maxCount int
}

func shapeOf(t MsgType) (shape, bool) {
	switch t {
	case MsgHello, MsgHelloReply:
		return shape{helloBytes, helloBytes, 1, 1}, true
	case MsgGuestPoints, MsgHostPoints:
		return shape{PointBytes, PointBytes, 1, MaxBatchElems}, true
	case MsgHostTags:
		return shape{1, MaxTagBytes, 1, MaxBatchElems}, true
	case MsgAck:
		return shape{0, 0, 0, 0}, true
	case MsgReveal:
		return shape{positionBytes, positionBytes, 1, MaxBatchElems}, true
	case MsgDone:
		return shape{doneBytes, doneBytes, 1, 1}, true
	}
	return shape{}, false
}

// SessionTag binds a message to its session. It is a hash of the session
// id, so the id itself need not travel in every message.
type SessionTag [16]byte

// SessionTagOf returns the first 16 bytes of
// SHA-256("fedrisk-psi-v1-session" || session).
func SessionTagOf(session []byte) SessionTag {
	h := sha256.New()
	h.Write([]byte("fedrisk-psi-v1-session"))
	h.Write(session)
	var t SessionTag
	copy(t[:], h.Sum(nil))
	return t
}

// Message is one decoded protocol message. Payload holds Count elements of
// ElemLen bytes back to back.
type Message struct {
	Type    MsgType
	Session SessionTag
	Batch   uint32
	Count   int
	ElemLen int
	Payload []byte
}

// Elem returns element i of the payload.
func (m Message) Elem(i int) []byte { return m.Payload[i*m.ElemLen : (i+1)*m.ElemLen] }

// check validates the message against its type's shape.
func (m Message) check() error {
	s, ok := shapeOf(m.Type)
	if !ok {
		return fmt.Errorf("%w %d", ErrUnknownType, uint8(m.Type))
	}
	if m.Count > MaxBatchElems || m.Count < 0 {
		return fmt.Errorf("%w: %s: %d elements, limit %d", ErrOversized, m.Type, m.Count, MaxBatchElems)
	}
	if m.ElemLen < 0 || m.ElemLen > 0xffff || m.Count*m.ElemLen > MaxPayloadBytes {
		return fmt.Errorf("%w: %s: payload of %d×%d bytes, limit %d", ErrOversized, m.Type, m.Count, m.ElemLen, MaxPayloadBytes)
	}
	if m.ElemLen < s.minElem || m.ElemLen > s.maxElem {
		return fmt.Errorf("%w: %s: element length %d, want %d..%d", ErrMalformed, m.Type, m.ElemLen, s.minElem, s.maxElem)
	}
	if m.Count < s.minCount || m.Count > s.maxCount {
		return fmt.Errorf("%w: %s: %d elements, want %d..%d", ErrMalformed, m.Type, m.Count, s.minCount, s.maxCount)
	}
	return nil
}

// Encode returns the wire form of m, after checking that m has the shape
// its type requires and that len(m.Payload) == m.Count*m.ElemLen.
func Encode(m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if len(m.Payload) != m.Count*m.ElemLen {
		return nil, fmt.Errorf("encode: %s: payload is %d bytes, header says %d×%d: %w", m.Type, len(m.Payload), m.Count, m.ElemLen, ErrMalformed)
	}
	b := make([]byte, HeaderBytes, HeaderBytes+len(m.Payload))
	b[0] = FormatVersion
	b[1] = byte(m.Type)
	copy(b[2:18], m.Session[:])
	binary.BigEndian.PutUint32(b[18:22], m.Batch)
	binary.BigEndian.PutUint32(b[22:26], uint32(m.Count))
	binary.BigEndian.PutUint16(b[26:28], uint16(m.ElemLen))
	return append(b, m.Payload...), nil
}

// Decode parses one encoded message. It fails with ErrTruncated,
// ErrOversized (over the limits, or trailing bytes), ErrUnknownType or
// ErrMalformed (wrong version or a shape its type forbids), never panics,
// and reads nothing beyond the header before checking the sizes. The
// returned Payload aliases b.
func Decode(b []byte) (Message, error) {
	if len(b) < HeaderBytes {
		return Message{}, fmt.Errorf("decode: %d bytes, header needs %d: %w", len(b), HeaderBytes, ErrTruncated)
	}
	if b[0] != FormatVersion {
		return Message{}, fmt.Errorf("decode: format version %d, want %d: %w", b[0], FormatVersion, ErrMalformed)
	}
	count := binary.BigEndian.Uint32(b[22:26])
	if count > MaxBatchElems {
		return Message{}, fmt.Errorf("decode: %d elements, limit %d: %w", count, MaxBatchElems, ErrOversized)
	}
	m := Message{
		Type:    MsgType(b[1]),
		Batch:   binary.BigEndian.Uint32(b[18:22]),
		Count:   int(count),
		ElemLen: int(binary.BigEndian.Uint16(b[26:28])),
	}
	copy(m.Session[:], b[2:18])
	if err := m.check(); err != nil {
		return Message{}, fmt.Errorf("decode: %w", err)
	}
	want := HeaderBytes + m.Count*m.ElemLen
	switch {
	case len(b) < want:
		return Message{}, fmt.Errorf("decode: %s: %d bytes, header says %d: %w", m.Type, len(b), want, ErrTruncated)
	case len(b) > want:
		return Message{}, fmt.Errorf("decode: %s: %d bytes after the %d the header says: %w", m.Type, len(b)-want, want, ErrOversized)
	}
	m.Payload = b[HeaderBytes:want:want]
	return m, nil
}
