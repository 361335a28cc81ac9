package kkrt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Wire format of one message (integers big-endian), the layout of package
// psi's with a version byte of its own, so neither codec accepts the
// other's messages:
//
//	offset size field
//	0      1    format version (FormatVersion)
//	1      1    type (MsgType)
//	2      16   session tag (SessionTagOf(session id))
//	18     4    batch index
//	22     4    element count
//	26     2    element length in bytes
//	28     ...  payload: count × element length bytes, nothing after it
const (
	// FormatVersion is the first byte of every encoded KKRT message.
	FormatVersion = 0x4b // 'K'
	// HeaderBytes is the size of the fixed header.
	HeaderBytes = 28
	// MaxBatchElems bounds the element count of one message.
	MaxBatchElems = 1 << 16
	// MaxPayloadBytes bounds the payload of one message (4 MiB).
	MaxPayloadBytes = 4 << 20
	// MaxMessageBytes bounds an encoded message.
	MaxMessageBytes = HeaderBytes + MaxPayloadBytes
)

// Decoding errors.
var (
	// ErrTruncated reports an encoded message shorter than its header says.
	ErrTruncated = errors.New("kkrt: truncated message")
	// ErrOversized reports a message over the limits or with trailing bytes.
	ErrOversized = errors.New("kkrt: oversized message")
	// ErrUnknownType reports a message type this version does not know.
	ErrUnknownType = errors.New("kkrt: unknown message type")
)

// MsgType is the kind of a message. "G→H" is guest to host.
type MsgType uint8

// The message types.
const (
	MsgGuestHello   MsgType = 1 // G→H: GuestHello
	MsgHostHello    MsgType = 2 // H→G: HostHello
	MsgExtension    MsgType = 3 // G→H: a batch of OT-extension rows u_j (RowBytes each)
	MsgExtensionAck MsgType = 4 // H→G: extension batch absorbed (flow control), no payload
	MsgHostTags     MsgType = 5 // H→G: a batch of host OPRF values, NumHashes·TagBytes per element
	MsgTagsAck      MsgType = 6 // G→H: tag batch received (flow control), no payload
	MsgReveal       MsgType = 7 // G→H: matched host positions (both-learn mode)
	MsgDone         MsgType = 8 // G→H: the guest finished; counts of what it revealed
)

func (t MsgType) String() string {
	switch t {
	case MsgGuestHello:
		return "guest-hello"
	case MsgHostHello:
		return "host-hello"
	case MsgExtension:
		return "extension"
	case MsgExtensionAck:
		return "extension-ack"
	case MsgHostTags:
		return "host-tags"
	case MsgTagsAck:
		return "tags-ack"
	case MsgReveal:
		return "reveal"
	case MsgDone:
		return "done"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// PositionBytes is one revealed host position (big-endian uint32).
const PositionBytes = 4

const doneBytes = 8

type shape struct{ minElem, maxElem, minCount, maxCount int }

func shapeOf(t MsgType) (shape, bool) {
	switch t {
	case MsgGuestHello:
		return shape{GuestHelloBytes, GuestHelloBytes, 1, 1}, true
	case MsgHostHello:
		return shape{HostHelloBytes, HostHelloBytes, 1, 1}, true
	case MsgExtension:
		return shape{RowBytes, RowBytes, 1, MaxBatchElems}, true
	case MsgHostTags:
		return shape{NumHashes, NumHashes * psi.MaxTagBytes, 1, MaxBatchElems}, true
	case MsgExtensionAck, MsgTagsAck:
		return shape{0, 0, 0, 0}, true
	case MsgReveal:
		return shape{PositionBytes, PositionBytes, 1, MaxBatchElems}, true
	case MsgDone:
		return shape{doneBytes, doneBytes, 1, 1}, true
	}
	return shape{}, false
}

// SessionTag binds a message to its session.
type SessionTag [16]byte

// SessionTagOf returns the first 16 bytes of
// SHA-256("fedrisk-kkrt-v1-session" || session).
func SessionTagOf(session []byte) SessionTag {
	h := sha256.New()
	h.Write([]byte("fedrisk-kkrt-v1-session"))
	h.Write(session)
	var t SessionTag
	copy(t[:], h.Sum(nil))
	return t
}

// Message is one decoded message; Payload holds Count elements of ElemLen
// bytes back to back.
type Message struct {
	Type    MsgType
	Session SessionTag
	Batch   uint32
	Count   int
	ElemLen int
	Payload []byte
}

// check validates the message against its type's shape.
func (m Message) check() error {
	s, ok := shapeOf(m.Type)
	if !ok {
		return fmt.Errorf("%w %d", ErrUnknownType, uint8(m.Type))
	}
	if m.Count < 0 || m.Count > MaxBatchElems {
		return fmt.Errorf("%w: %s: %d elements, limit %d", ErrOversized, m.Type, m.Count, MaxBatchElems)
	}
	if m.ElemLen < 0 || m.ElemLen > 0xffff || m.Count*m.ElemLen > MaxPayloadBytes {
		return fmt.Errorf("%w: %s: payload of %d×%d bytes, limit %d", ErrOversized, m.Type, m.Count, m.ElemLen, MaxPayloadBytes)
	}
	if m.ElemLen < s.minElem || m.ElemLen > s.maxElem {
		return fmt.Errorf("%w: %s: element length %d, want %d..%d", psi.ErrMalformed, m.Type, m.ElemLen, s.minElem, s.maxElem)
	}
	if m.Type == MsgHostTags && m.ElemLen%NumHashes != 0 {
		return fmt.Errorf("%w: %s: element length %d is not %d tags", psi.ErrMalformed, m.Type, m.ElemLen, NumHashes)
	}
	if m.Count < s.minCount || m.Count > s.maxCount {
		return fmt.Errorf("%w: %s: %d elements, want %d..%d", psi.ErrMalformed, m.Type, m.Count, s.minCount, s.maxCount)
	}
	return nil
}

// Encode returns the wire form of m after checking its shape and that
// len(m.Payload) == m.Count*m.ElemLen.
func Encode(m Message) ([]byte, error) {
	return AppendEncode(nil, m)
}

// AppendEncode appends the wire form of m to dst (see Encode).
func AppendEncode(dst []byte, m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if len(m.Payload) != m.Count*m.ElemLen {
		return nil, fmt.Errorf("encode: %s: payload is %d bytes, header says %d×%d: %w", m.Type, len(m.Payload), m.Count, m.ElemLen, psi.ErrMalformed)
	}
	var h [HeaderBytes]byte
	h[0] = FormatVersion
	h[1] = byte(m.Type)
	copy(h[2:18], m.Session[:])
	binary.BigEndian.PutUint32(h[18:22], m.Batch)
	binary.BigEndian.PutUint32(h[22:26], uint32(m.Count))
	binary.BigEndian.PutUint16(h[26:28], uint16(m.ElemLen))
	dst = append(dst, h[:]...)
	return append(dst, m.Payload...), nil
}

// Decode parses one encoded message. It fails with ErrTruncated,
// ErrOversized, ErrUnknownType or psi.ErrMalformed (wrong version or a
// shape its type forbids) and never panics. The Payload aliases b.
func Decode(b []byte) (Message, error) {
	if len(b) < HeaderBytes {
		return Message{}, fmt.Errorf("decode: %d bytes, header needs %d: %w", len(b), HeaderBytes, ErrTruncated)
	}
	if b[0] != FormatVersion {
		return Message{}, fmt.Errorf("decode: format version %d, want %d: %w", b[0], FormatVersion, psi.ErrMalformed)
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

// GuestHello is the guest's opening: its settings, its set size, the seed
// of the cuckoo hash functions and its base-OT point. Wire form
// (GuestHelloBytes, big-endian):
//
//	0  1  protocol version (ProtocolVersion)
//	1  1  mode
//	2  2  reserved, zero
//	4  4  guest set size n (rows)
//	8  4  bins per extension batch (a multiple of 128)
//	12 8  first 8 bytes of SHA-256 of the normalisation fingerprint
//	20 16 cuckoo seed
//	36 32 base-OT point A
type GuestHello struct {
	Mode       psi.Mode
	SetSize    int
	BatchSize  int
	NormDigest [8]byte
	CuckooSeed [SeedBytes]byte
	OTPoint    [PointBytes]byte
}

// HostHello is the host's answer: its set size, the key of the
// pseudorandom code and its base-OT points. Wire form (HostHelloBytes):
//
//	0  1  protocol version
//	1  1  mode
//	2  2  reserved, zero
//	4  4  host set size m (rows)
//	8  4  host elements per tag batch
//	12 8  normalisation digest
//	20 16 code key
//	36 CodeBits×32 base-OT points B_1..B_k
type HostHello struct {
	Mode       psi.Mode
	SetSize    int
	BatchSize  int
	NormDigest [8]byte
	CodeKey    [SeedBytes]byte
	OTPoints   []byte
}

// Sizes of the hellos and the protocol version they carry.
const (
	ProtocolVersion = 1
	GuestHelloBytes = 36 + PointBytes
	HostHelloBytes  = 36 + CodeBits*PointBytes
)

func putHelloHead(b []byte, mode psi.Mode, size, batch int, norm [8]byte, seed [SeedBytes]byte) {
	b[0] = ProtocolVersion
	b[1] = byte(mode)
	binary.BigEndian.PutUint32(b[4:8], uint32(size))
	binary.BigEndian.PutUint32(b[8:12], uint32(batch))
	copy(b[12:20], norm[:])
	copy(b[20:36], seed[:])
}

type helloHead struct {
	mode        psi.Mode
	size, batch int
	norm        [8]byte
	seed        [SeedBytes]byte
}

func parseHelloHead(b []byte, what string, want int) (helloHead, error) {
	var h helloHead
	if len(b) != want {
		return h, fmt.Errorf("%w: %s of %d bytes, want %d", psi.ErrMalformed, what, len(b), want)
	}
	if b[0] != ProtocolVersion {
		return h, fmt.Errorf("%w: %s: protocol version %d, want %d", psi.ErrMismatch, what, b[0], ProtocolVersion)
	}
	if b[2] != 0 || b[3] != 0 {
		return h, fmt.Errorf("%w: %s: reserved bytes set", psi.ErrMalformed, what)
	}
	h.mode = psi.Mode(b[1])
	switch h.mode {
	case psi.ModeIntersection, psi.ModeBothLearn, psi.ModeCardinality:
	default:
		return h, fmt.Errorf("%w: %s: unknown %s", psi.ErrMalformed, what, h.mode)
	}
	h.size = int(binary.BigEndian.Uint32(b[4:8]))
	h.batch = int(binary.BigEndian.Uint32(b[8:12]))
	if h.size > MaxSetSize {
		return h, fmt.Errorf("%w: %s: set size %d above %d", psi.ErrMalformed, what, h.size, MaxSetSize)
	}
	if h.batch < 1 || h.batch > MaxBatchElems {
		return h, fmt.Errorf("%w: %s: batch size %d out of range 1..%d", psi.ErrMalformed, what, h.batch, MaxBatchElems)
	}
	copy(h.norm[:], b[12:20])
	copy(h.seed[:], b[20:36])
	return h, nil
}

// MarshalBinary returns the GuestHelloBytes wire form.
func (g GuestHello) MarshalBinary() ([]byte, error) {
	b := make([]byte, GuestHelloBytes)
	putHelloHead(b, g.Mode, g.SetSize, g.BatchSize, g.NormDigest, g.CuckooSeed)
	copy(b[36:], g.OTPoint[:])
	return b, nil
}

// ParseGuestHello decodes a guest hello strictly: exact length, known
// version and mode, reserved bytes zero, sizes in range, the batch a
// multiple of 128. It does not check the point (the host does, on use).
func ParseGuestHello(b []byte) (GuestHello, error) {
	h, err := parseHelloHead(b, "guest hello", GuestHelloBytes)
	if err != nil {
		return GuestHello{}, err
	}
	if h.batch%binsPerBlock != 0 {
		return GuestHello{}, fmt.Errorf("%w: guest hello: batch of %d bins is not a multiple of %d", psi.ErrMalformed, h.batch, binsPerBlock)
	}
	g := GuestHello{Mode: h.mode, SetSize: h.size, BatchSize: h.batch, NormDigest: h.norm, CuckooSeed: h.seed}
	copy(g.OTPoint[:], b[36:])
	return g, nil
}

// MarshalBinary returns the HostHelloBytes wire form.
func (h HostHello) MarshalBinary() ([]byte, error) {
	if len(h.OTPoints) != CodeBits*PointBytes {
		return nil, fmt.Errorf("%w: host hello with %d bytes of points", psi.ErrMalformed, len(h.OTPoints))
	}
	b := make([]byte, HostHelloBytes)
	putHelloHead(b, h.Mode, h.SetSize, h.BatchSize, h.NormDigest, h.CodeKey)
	copy(b[36:], h.OTPoints)
	return b, nil
}

// ParseHostHello decodes a host hello strictly (see ParseGuestHello). The
// points alias b.
func ParseHostHello(b []byte) (HostHello, error) {
	h, err := parseHelloHead(b, "host hello", HostHelloBytes)
	if err != nil {
		return HostHello{}, err
	}
	return HostHello{Mode: h.mode, SetSize: h.size, BatchSize: h.batch, NormDigest: h.norm, CodeKey: h.seed, OTPoints: b[36:]}, nil
}
