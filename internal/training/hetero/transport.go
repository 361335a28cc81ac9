package hetero

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Transport carries the messages of one guest–host pair. The guest holds
// one per host; each host holds one to its guest. Send and Recv may be
// called from different goroutines, but each from one goroutine at a time.
// Messages arrive in the order they were sent; a transport that cannot
// deliver returns an error, which aborts the run.
//
// The service layer implements it over mutually authenticated TLS (the
// peer's certificate identifies the party); an implementation should
// refuse frames over MaxMessageBytes before reading them, and pass the
// frames through Encode and Decode.
type Transport interface {
	Send(ctx context.Context, m Message) error
	Recv(ctx context.Context) (Message, error)
}

// ErrClosed is returned by a pipe end after Close.
var ErrClosed = errors.New("hetero: transport closed")

// Pipe returns the two ends of an in-memory transport, for tests and
// in-process runs. Every message is encoded on Send and decoded on Recv, so
// the wire format is exercised; buffer is the number of messages a Send can
// run ahead of the receiver.
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
		// Deliver what was sent before the close.
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

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = nil
	r.bytes = map[Direction]int64{}
}

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

// recvExpect receives the next message and checks its type, epoch and
// batch. An Abort from the peer becomes ErrAborted with its reason.
func recvExpect(ctx context.Context, t Transport, typ MsgType, epoch, batch uint32) (Message, error) {
	m, err := t.Recv(ctx)
	if err != nil {
		return Message{}, fmt.Errorf("receive %s: %w", typ, err)
	}
	if m.Type == MsgAbort {
		return Message{}, fmt.Errorf("%w: %s", ErrAborted, sanitizeReason(m.Payload))
	}
	if m.Type != typ || m.Epoch != epoch || m.Batch != batch {
		return Message{}, fmt.Errorf("%w: got %s, want %s(epoch %d, batch %d)", ErrProtocol, m, typ, epoch, batch)
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
