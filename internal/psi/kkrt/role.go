package kkrt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Role is one party's side of a session as a message-driven state machine,
// the contract of psi.Role with this package's messages: Start, then Handle
// for every message from the peer, each returning messages to send. The
// guest speaks first and every host message answers a guest message.
// An error aborts the role for good; later calls return an error wrapping
// psi.ErrAborted. A Role is not safe for concurrent use; work inside a call
// uses all cores.
//
//	guest                                     host
//	guest-hello ───────────────────────────▶
//	                           ◀───────────── host-hello
//	extension 0..W-1 ──────────────────────▶ (W in flight)
//	                           ◀───────────── extension-ack k → next extension
//	                           ◀───────────── host-tags 0..W-1, after the last extension
//	tags-ack k ────────────────────────────▶ → next host-tags
//	[reveal (both-learn)], done ───────────▶
type Role interface {
	Start(ctx context.Context) ([]Message, error)
	Handle(ctx context.Context, msg Message) ([]Message, error)
	Done() bool
	Result() (psi.Result, error)
	Close()
}

// NewGuestRole returns the guest's Role for ids (normalised identifiers).
func NewGuestRole(cfg Config, ids [][]byte) (Role, error) {
	g, err := NewGuest(cfg, ids)
	if err != nil {
		return nil, err
	}
	return &guestRole{roleBase: roleBase{sess: g.sess, window: g.cfg.Window}, g: g}, nil
}

// NewHostRole returns the host's Role for ids.
func NewHostRole(cfg Config, ids [][]byte) (Role, error) {
	h, err := NewHost(cfg, ids)
	if err != nil {
		return nil, err
	}
	return &hostRole{roleBase: roleBase{sess: h.sess, window: h.cfg.Window}, h: h}, nil
}

// roleBase is what both roles share.
type roleBase struct {
	sess   SessionTag
	window int
	err    error
	done   bool
	result psi.Result
}

func (r *roleBase) usable(ctx context.Context) error {
	if r.err != nil {
		return fmt.Errorf("%w: %w", psi.ErrAborted, r.err)
	}
	if r.done {
		return fmt.Errorf("%w: session already finished", psi.ErrProtocol)
	}
	return ctx.Err()
}

func (r *roleBase) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return err
}

// admit checks a message handed to Handle: shape, payload size, session.
func (r *roleBase) admit(msg Message) error {
	if err := msg.check(); err != nil {
		return err
	}
	if len(msg.Payload) != msg.Count*msg.ElemLen {
		return fmt.Errorf("%w: %s: payload is %d bytes, header says %d×%d", psi.ErrMalformed, msg.Type, len(msg.Payload), msg.Count, msg.ElemLen)
	}
	if msg.Session != r.sess {
		return fmt.Errorf("%w: %s", psi.ErrWrongSession, msg.Type)
	}
	return nil
}

func (r *roleBase) message(t MsgType, batch, elemLen int, payload []byte) Message {
	count := 0
	if elemLen > 0 {
		count = len(payload) / elemLen
	}
	return Message{Type: t, Session: r.sess, Batch: uint32(batch), Count: count, ElemLen: elemLen, Payload: payload}
}

func (r *roleBase) Done() bool { return r.done }

func (r *roleBase) Result() (psi.Result, error) {
	if r.err != nil {
		return psi.Result{}, fmt.Errorf("%w: %w", psi.ErrAborted, r.err)
	}
	if !r.done {
		return psi.Result{}, errors.New("kkrt: session not finished")
	}
	return r.result, nil
}

// index checks that msg.Batch is one of n batches and returns it.
func index(msg Message, n int) (int, error) {
	if uint64(msg.Batch) >= uint64(n) {
		return 0, fmt.Errorf("%w: %s batch %d, only %d expected", psi.ErrProtocol, msg.Type, msg.Batch, n)
	}
	return int(msg.Batch), nil
}

type guestRole struct {
	roleBase
	g        *Guest
	started  bool
	ready    bool
	nextExt  int
	acked    []bool
	ackedN   int
	tagsGot  map[int]bool // a map: memory follows the batches received, not the host's claims
	tagsN    int
	rows     []int
	revealed []int
}

func (r *guestRole) Start(ctx context.Context) ([]Message, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	if r.started {
		return nil, r.fail(fmt.Errorf("%w: guest started twice", psi.ErrProtocol))
	}
	r.started = true
	hello, _ := r.g.Hello().MarshalBinary()
	return []Message{r.message(MsgGuestHello, 0, GuestHelloBytes, hello)}, nil
}

func (r *guestRole) Handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	out, err := r.handle(ctx, msg)
	if err != nil {
		r.g.Close()
		return nil, r.fail(fmt.Errorf("kkrt guest: %w", err))
	}
	return out, nil
}

func (r *guestRole) handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := r.admit(msg); err != nil {
		return nil, err
	}
	if !r.started {
		return nil, fmt.Errorf("%w: %s before Start", psi.ErrProtocol, msg.Type)
	}
	if msg.Type == MsgHostHello {
		return r.onHostHello(ctx, msg)
	}
	if !r.ready {
		return nil, fmt.Errorf("%w: %s before the host's hello", psi.ErrProtocol, msg.Type)
	}
	switch msg.Type {
	case MsgExtensionAck:
		return r.onAck(ctx, msg)
	case MsgHostTags:
		return r.onTags(msg)
	}
	return nil, fmt.Errorf("%w: guest does not accept %s", psi.ErrProtocol, msg.Type)
}

func (r *guestRole) onHostHello(ctx context.Context, msg Message) ([]Message, error) {
	if r.ready {
		return nil, fmt.Errorf("%w: second host hello", psi.ErrProtocol)
	}
	h, err := ParseHostHello(msg.Payload)
	if err != nil {
		return nil, err
	}
	if err := r.g.Accept(h); err != nil {
		return nil, err
	}
	r.ready = true
	r.acked = make([]bool, r.g.ExtensionBatches())
	r.tagsGot = map[int]bool{}
	out, err := r.sendWindow(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, r.maybeFinish()...), nil
}

func (r *guestRole) sendWindow(ctx context.Context) ([]Message, error) {
	var out []Message
	for r.nextExt < len(r.acked) && r.nextExt-r.ackedN < r.window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u, err := r.g.Extension(r.nextExt)
		if err != nil {
			return nil, err
		}
		out = append(out, r.message(MsgExtension, r.nextExt, RowBytes, u))
		r.nextExt++
	}
	return out, nil
}

func (r *guestRole) onAck(ctx context.Context, msg Message) ([]Message, error) {
	k, err := index(msg, r.nextExt)
	if err != nil || r.acked[k] {
		return nil, fmt.Errorf("%w: ack for extension batch %d, not sent or already acknowledged", psi.ErrProtocol, msg.Batch)
	}
	r.acked[k] = true
	r.ackedN++
	return r.sendWindow(ctx)
}

func (r *guestRole) onTags(msg Message) ([]Message, error) {
	if r.ackedN != len(r.acked) {
		return nil, fmt.Errorf("%w: host tags before every extension batch was acknowledged", psi.ErrProtocol)
	}
	k, err := index(msg, r.g.TagBatches())
	if err != nil {
		return nil, err
	}
	if r.tagsGot[k] {
		return nil, fmt.Errorf("%w: host tag batch %d repeated", psi.ErrProtocol, k)
	}
	if msg.ElemLen != NumHashes*r.g.TagLen() || msg.Count != r.g.TagBatchLen(k) {
		return nil, fmt.Errorf("%w: host tag batch %d has %d elements of %d bytes, want %d of %d",
			psi.ErrProtocol, k, msg.Count, msg.ElemLen, r.g.TagBatchLen(k), NumHashes*r.g.TagLen())
	}
	rows, pos, err := r.g.Match(k, msg.Payload)
	if err != nil {
		return nil, err
	}
	r.tagsGot[k] = true
	r.tagsN++
	r.rows = append(r.rows, rows...)
	r.revealed = append(r.revealed, pos...)
	out := []Message{r.message(MsgTagsAck, k, 0, nil)}
	return append(out, r.maybeFinish()...), nil
}

// maybeFinish computes the result once every batch is through.
func (r *guestRole) maybeFinish() []Message {
	if r.ackedN != len(r.acked) || r.tagsN != r.g.TagBatches() {
		return nil
	}
	r.result = r.g.Result(r.rows)
	var out []Message
	var batches, total int
	if r.g.cfg.Mode == psi.ModeBothLearn {
		// Tag batches arrive in any order; positions go out ascending.
		pos := r.revealed
		slices.Sort(pos)
		total = len(pos)
		for start := 0; start < len(pos); start += r.g.cfg.BatchSize {
			chunk := pos[start:min(start+r.g.cfg.BatchSize, len(pos))]
			payload := make([]byte, 0, len(chunk)*PositionBytes)
			for _, p := range chunk {
				payload = binary.BigEndian.AppendUint32(payload, uint32(p))
			}
			out = append(out, r.message(MsgReveal, batches, PositionBytes, payload))
			batches++
		}
	}
	done := make([]byte, doneBytes)
	binary.BigEndian.PutUint32(done[0:4], uint32(batches))
	binary.BigEndian.PutUint32(done[4:8], uint32(total))
	out = append(out, r.message(MsgDone, 0, doneBytes, done))
	r.rows, r.revealed = nil, nil
	r.done = true
	r.g.Close()
	return out
}

func (r *guestRole) Close() {
	r.g.Close()
	if !r.done && r.err == nil {
		r.err = errors.New("kkrt: role closed")
	}
}

type hostRole struct {
	roleBase
	h         *Host
	ready     bool
	extGot    map[int]bool // a map: memory follows the batches received, not the guest's claims
	extN      int
	nextTag   int
	tagAcked  []bool
	tagAckedN int
	reveals   int
	positions []int
}

func (r *hostRole) Start(ctx context.Context) ([]Message, error) {
	return nil, r.usable(ctx)
}

func (r *hostRole) Handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	out, err := r.handle(ctx, msg)
	if err != nil {
		r.h.Close()
		return nil, r.fail(fmt.Errorf("kkrt host: %w", err))
	}
	return out, nil
}

func (r *hostRole) handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := r.admit(msg); err != nil {
		return nil, err
	}
	if msg.Type == MsgGuestHello {
		return r.onHello(ctx, msg)
	}
	if !r.ready {
		return nil, fmt.Errorf("%w: %s before the guest's hello", psi.ErrProtocol, msg.Type)
	}
	switch msg.Type {
	case MsgExtension:
		return r.onExtension(ctx, msg)
	case MsgTagsAck:
		return r.onTagsAck(ctx, msg)
	case MsgReveal:
		return nil, r.onReveal(msg)
	case MsgDone:
		return nil, r.onDone(msg)
	}
	return nil, fmt.Errorf("%w: host does not accept %s", psi.ErrProtocol, msg.Type)
}

func (r *hostRole) onHello(ctx context.Context, msg Message) ([]Message, error) {
	if r.ready {
		return nil, fmt.Errorf("%w: second guest hello", psi.ErrProtocol)
	}
	g, err := ParseGuestHello(msg.Payload)
	if err != nil {
		return nil, err
	}
	reply, err := r.h.Respond(g)
	if err != nil {
		return nil, err
	}
	r.ready = true
	r.extGot = map[int]bool{}
	r.tagAcked = make([]bool, r.h.TagBatches())
	payload, err := reply.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := []Message{r.message(MsgHostHello, 0, HostHelloBytes, payload)}
	if r.h.ExtensionBatches() == 0 {
		more, err := r.sendWindow(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (r *hostRole) onExtension(ctx context.Context, msg Message) ([]Message, error) {
	k, err := index(msg, r.h.ExtensionBatches())
	if err != nil {
		return nil, err
	}
	if r.extGot[k] {
		return nil, fmt.Errorf("%w: extension batch %d repeated", psi.ErrProtocol, k)
	}
	if want := r.h.ExtensionBatchLen(k); msg.Count != want {
		return nil, fmt.Errorf("%w: extension batch %d has %d rows, want %d", psi.ErrProtocol, k, msg.Count, want)
	}
	if err := r.h.AddExtension(k, msg.Payload); err != nil {
		return nil, err
	}
	r.extGot[k] = true
	r.extN++
	out := []Message{r.message(MsgExtensionAck, k, 0, nil)}
	if r.extN == r.h.ExtensionBatches() {
		more, err := r.sendWindow(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (r *hostRole) sendWindow(ctx context.Context) ([]Message, error) {
	var out []Message
	w := NumHashes * r.h.TagLen()
	for r.nextTag < len(r.tagAcked) && r.nextTag-r.tagAckedN < r.window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tags, err := r.h.Tags(r.nextTag)
		if err != nil {
			return nil, err
		}
		out = append(out, r.message(MsgHostTags, r.nextTag, w, tags))
		r.nextTag++
	}
	return out, nil
}

func (r *hostRole) onTagsAck(ctx context.Context, msg Message) ([]Message, error) {
	k, err := index(msg, r.nextTag)
	if err != nil || r.tagAcked[k] {
		return nil, fmt.Errorf("%w: ack for tag batch %d, not sent or already acknowledged", psi.ErrProtocol, msg.Batch)
	}
	r.tagAcked[k] = true
	r.tagAckedN++
	return r.sendWindow(ctx)
}

func (r *hostRole) onReveal(msg Message) error {
	if r.h.cfg.Mode != psi.ModeBothLearn {
		return fmt.Errorf("%w: reveal outside both-learn mode", psi.ErrProtocol)
	}
	if int(msg.Batch) != r.reveals {
		return fmt.Errorf("%w: reveal batch %d, want %d", psi.ErrProtocol, msg.Batch, r.reveals)
	}
	if len(r.positions)+msg.Count > r.h.rows {
		return fmt.Errorf("%w: more positions revealed than the host has elements", psi.ErrProtocol)
	}
	for i := range msg.Count {
		r.positions = append(r.positions, int(binary.BigEndian.Uint32(msg.Payload[i*PositionBytes:])))
	}
	r.reveals++
	return nil
}

func (r *hostRole) onDone(msg Message) error {
	if r.extN != r.h.ExtensionBatches() || r.tagAckedN != len(r.tagAcked) {
		return fmt.Errorf("%w: done before every batch was exchanged", psi.ErrProtocol)
	}
	batches := binary.BigEndian.Uint32(msg.Payload[0:4])
	total := binary.BigEndian.Uint32(msg.Payload[4:8])
	if uint64(batches) != uint64(r.reveals) || uint64(total) != uint64(len(r.positions)) {
		return fmt.Errorf("%w: done announces %d reveal batches of %d positions, got %d of %d",
			psi.ErrProtocol, batches, total, r.reveals, len(r.positions))
	}
	r.result = psi.Result{PeerSize: r.h.PeerSize()}
	if r.h.cfg.Mode == psi.ModeBothLearn {
		rows, err := r.h.Learn(r.positions)
		if err != nil {
			return err
		}
		r.result = psi.Result{Learned: true, Count: len(rows), Indices: rows, PeerSize: r.h.PeerSize()}
	}
	r.positions = nil
	r.done = true
	r.h.Close()
	return nil
}

func (r *hostRole) Close() {
	r.h.Close()
	if !r.done && r.err == nil {
		r.err = errors.New("kkrt: role closed")
	}
}
