package secureboost

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Transport carries the messages of one guest–host pair, as the hetero-LR
// protocol's Transport does (same method set, this package's Message).
// The guest holds one per host; each host holds one to its guest. Send and
// Recv may be called from different goroutines, but each from one
// goroutine at a time. Messages arrive in the order they were sent; a
// transport that cannot deliver returns an error, which aborts the run.
type Transport interface {
	Send(ctx context.Context, m Message) error
	Recv(ctx context.Context) (Message, error)
}

// ErrClosed is returned by a transport after Close.
var ErrClosed = errors.New("secureboost: transport closed")

// Pipe returns the two ends of an in-memory transport. Every message is
// encoded on Send and decoded on Recv, so the wire format is exercised;
// buffer is the number of messages a Send can run ahead of the receiver.
func Pipe(buffer int) (a, b *PipeEnd) {
	ab := make(chan []byte, buffer)
	ba := make(chan []byte, buffer)
	done := make(chan struct{})
	var once sync.Once
	closeFn := func() { once.Do(func() { close(done) }) }
	return &PipeEnd{out: ab, in: ba, done: done, close: closeFn},
		&PipeEnd{out: ba, in: ab, done: done, close: closeFn}
}

// PipeEnd is one end of a Pipe.
type PipeEnd struct {
	out   chan<- []byte
	in    <-chan []byte
	done  chan struct{}
	close func()
}

// Send encodes m and queues it for the other end.
func (p *PipeEnd) Send(ctx context.Context, m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	select {
	case p.out <- b:
		return nil
	case <-p.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Recv returns the next message from the other end.
func (p *PipeEnd) Recv(ctx context.Context) (Message, error) {
	select {
	case b := <-p.in:
		return Decode(b)
	case <-p.done:
		select {
		case b := <-p.in:
			return Decode(b)
		default:
			return Message{}, ErrClosed
		}
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close closes both ends.
func (p *PipeEnd) Close() { p.close() }

// Stream is a Transport over a byte stream (a TCP or TLS connection):
// every message is a 4-byte big-endian length and the encoded message.
// Frames over MaxMessageBytes are refused before they are read. Context
// cancellation is not seen by a blocked read or write: the owner closes
// the connection to unblock it.
type Stream struct {
	mu sync.Mutex // Send
	w  *bufio.Writer
	r  *bufio.Reader
}

// NewStream returns a Transport over rw.
func NewStream(rw io.ReadWriter) *Stream {
	return &Stream{w: bufio.NewWriterSize(rw, 1<<16), r: bufio.NewReaderSize(rw, 1<<16)}
}

// Send writes one frame.
func (s *Stream) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	limit, ok := maxPayload(m.Type)
	if !ok {
		return fmt.Errorf("send: %w %d", ErrUnknownType, uint8(m.Type))
	}
	if len(m.Payload) > limit {
		return fmt.Errorf("send: %w: %s payload of %d bytes, limit %d", ErrOversized, m.Type, len(m.Payload), limit)
	}
	var hdr [4 + HeaderBytes]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(HeaderBytes+len(m.Payload)))
	putHeader(hdr[4:], m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(hdr[:]); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := s.w.Write(m.Payload); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Recv reads one frame.
func (s *Stream) Recv(ctx context.Context) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	var n [4]byte
	if _, err := io.ReadFull(s.r, n[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Message{}, ErrClosed
		}
		return Message{}, fmt.Errorf("receive: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxMessageBytes {
		return Message{}, fmt.Errorf("receive: %w: frame of %d bytes", ErrOversized, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return Message{}, fmt.Errorf("receive: %w", err)
	}
	return Decode(b)
}

// Direction says who sent a recorded message.
type Direction uint8

// The directions.
const (
	GuestToHost Direction = 1
	HostToGuest Direction = 2
)

func (d Direction) String() string {
	if d == GuestToHost {
		return "guest→host"
	}
	return "host→guest"
}

// Record is one message as it crossed the transport.
type Record struct {
	Peer      string
	Direction Direction
	Message   Message
	Wire      []byte // the encoded message
}

// Recorder keeps every message that crosses the transports it wraps, for
// privacy tests and byte counts. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	records []Record
	bytes   map[Direction]int64
	keep    bool
}

// NewRecorder returns a recorder; keep false counts bytes without keeping
// the messages (for benchmarks).
func NewRecorder(keep bool) *Recorder {
	return &Recorder{keep: keep, bytes: map[Direction]int64{}}
}

// Wrap returns t recording the messages it sends in direction send and
// receives in the opposite one. Wrap only one end of each pair.
func (r *Recorder) Wrap(t Transport, peer string, send Direction) Transport {
	recv := HostToGuest
	if send == HostToGuest {
		recv = GuestToHost
	}
	return &recording{t: t, r: r, peer: peer, send: send, recv: recv}
}

func (r *Recorder) add(peer string, d Direction, m Message) {
	var wire []byte
	if r.keep {
		wire, _ = Encode(m)
		m.Payload = append([]byte(nil), m.Payload...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes[d] += int64(HeaderBytes + len(m.Payload))
	if r.keep {
		r.records = append(r.records, Record{Peer: peer, Direction: d, Message: m, Wire: wire})
	}
}

// Records returns the recorded messages in the order they were recorded.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// Bytes returns the encoded bytes recorded in direction d.
func (r *Recorder) Bytes(d Direction) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes[d]
}

// Total returns the encoded bytes recorded in both directions.
func (r *Recorder) Total() int64 { return r.Bytes(GuestToHost) + r.Bytes(HostToGuest) }

type recording struct {
	t          Transport
	r          *Recorder
	peer       string
	send, recv Direction
}

func (c *recording) Send(ctx context.Context, m Message) error {
	if err := c.t.Send(ctx, m); err != nil {
		return err
	}
	c.r.add(c.peer, c.send, m)
	return nil
}

func (c *recording) Recv(ctx context.Context) (Message, error) {
	m, err := c.t.Recv(ctx)
	if err != nil {
		return m, err
	}
	c.r.add(c.peer, c.recv, m)
	return m, nil
}

// recvExpect receives the next message and checks its type and counters.
// An Abort from the peer becomes ErrAborted with its reason.
func recvExpect(ctx context.Context, t Transport, typ MsgType, tree uint32, level, part uint16) (Message, error) {
	m, err := t.Recv(ctx)
	if err != nil {
		return Message{}, fmt.Errorf("receive %s: %w", typ, err)
	}
	if m.Type == MsgAbort {
		return Message{}, fmt.Errorf("%w: %s", ErrAborted, sanitizeReason(m.Payload))
	}
	if m.Type != typ || m.Tree != tree || m.Level != level || m.Part != part {
		return Message{}, fmt.Errorf("%w: got %s, want %s(tree %d, level %d, part %d)", ErrProtocol, m, typ, tree, level, part)
	}
	return m, nil
}

// sanitizeReason returns a printable, bounded form of an abort reason.
func sanitizeReason(b []byte) string {
	if len(b) > MaxReasonBytes {
		b = b[:MaxReasonBytes]
	}
	out := make([]rune, 0, len(b))
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// sendAbort tells the peer that we stop, best effort. The reason is the
// error's category only, never its details (which may describe local data).
func sendAbort(ctx context.Context, t Transport, err error) {
	reason := "internal error"
	for _, e := range []error{ErrProtocol, ErrMalformed, ErrMismatch, ErrParams, ErrBound, ErrAborted, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			reason = e.Error()
			break
		}
	}
	_ = t.Send(ctx, Message{Type: MsgAbort, Payload: []byte(reason)})
}
