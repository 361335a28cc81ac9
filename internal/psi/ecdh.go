package psi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// ecdhProtocolID is the protocol byte of the ECDH protocol's hellos.
const ecdhProtocolID = 1

// ECDH is the semi-honest ECDH-PSI (DH-OPRF) protocol over ristretto255
// described in the package documentation. The zero value is ready to use.
type ECDH struct{}

// Name implements Protocol.
func (ECDH) Name() string { return "ecdh-ristretto255-v1" }

// NewGuest implements Protocol: the returned Role is the bank's side.
func (ECDH) NewGuest(cfg Config, ids [][]byte) (Role, error) {
	p, err := newParty(cfg, ids)
	if err != nil {
		return nil, err
	}
	g := &ecdhGuest{party: p}
	g.mine = batches{total: len(ids), per: p.cfg.BatchSize}
	return g, nil
}

// NewHost implements Protocol: the returned Role is the data partner's side.
func (ECDH) NewHost(cfg Config, ids [][]byte) (Role, error) {
	p, err := newParty(cfg, ids)
	if err != nil {
		return nil, err
	}
	h := &ecdhHost{party: p}
	h.mine = batches{total: len(ids), per: p.cfg.BatchSize}
	return h, nil
}

// party is what both ECDH roles share.
type party struct {
	cfg    Config
	key    *Key
	dst    []byte
	sess   SessionTag
	ids    [][]byte
	mine   batches // how this party's own elements are cut into messages
	err    error   // set once the session failed
	done   bool
	result Result
}

func newParty(cfg Config, ids [][]byte) (party, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return party{}, err
	}
	if len(ids) > MaxSetSize {
		return party{}, fmt.Errorf("psi: %d identifiers, limit %d: %w", len(ids), MaxSetSize, ErrMalformed)
	}
	key, err := NewKey()
	if err != nil {
		return party{}, err
	}
	return party{cfg: cfg, key: key, dst: DST(cfg.Session), sess: SessionTagOf(cfg.Session), ids: ids}, nil
}

func (p *party) hello() hello {
	return hello{
		protocol:  ecdhProtocolID,
		mode:      p.cfg.Mode,
		setSize:   len(p.ids),
		batchSize: p.cfg.BatchSize,
		norm:      normDigest(p.cfg.Normalization),
	}
}

// agree checks the peer's hello against this party's settings.
func (p *party) agree(h hello) error {
	switch {
	case h.protocol != ecdhProtocolID:
		return fmt.Errorf("%w: peer speaks protocol %d, not %s", ErrMismatch, h.protocol, ECDH{}.Name())
	case h.mode != p.cfg.Mode:
		return fmt.Errorf("%w: peer wants %s, this side %s", ErrMismatch, h.mode, p.cfg.Mode)
	case h.norm != normDigest(p.cfg.Normalization):
		return fmt.Errorf("%w: normalisation fingerprints differ", ErrMismatch)
	}
	return nil
}

// fail aborts the session: the key is destroyed and every later call
// returns the error.
func (p *party) fail(err error) error {
	if p.err == nil {
		p.err = err
	}
	p.key.Destroy()
	return err
}

// usable returns the error a call must return before doing anything.
func (p *party) usable(ctx context.Context) error {
	if p.err != nil {
		return fmt.Errorf("%w: %w", ErrAborted, p.err)
	}
	if p.done {
		return fmt.Errorf("%w: session already finished", ErrProtocol)
	}
	return ctx.Err()
}

// admit checks a message handed to Handle: it may have been built in
// process rather than decoded, so its shape is checked again.
func (p *party) admit(msg Message) error {
	if err := msg.check(); err != nil {
		return err
	}
	if len(msg.Payload) != msg.Count*msg.ElemLen {
		return fmt.Errorf("%w: %s: payload is %d bytes, header says %d×%d", ErrMalformed, msg.Type, len(msg.Payload), msg.Count, msg.ElemLen)
	}
	if msg.Session != p.sess {
		return fmt.Errorf("%w: %s", ErrWrongSession, msg.Type)
	}
	return nil
}

func (p *party) message(t MsgType, batch, elemLen int, payload []byte) Message {
	count := 0
	if elemLen > 0 {
		count = len(payload) / elemLen
	}
	return Message{Type: t, Session: p.sess, Batch: uint32(batch), Count: count, ElemLen: elemLen, Payload: payload}
}

// finish ends the session successfully.
func (p *party) finish(r Result) {
	p.result = r
	p.done = true
	p.key.Destroy()
}

func (p *party) Done() bool { return p.done }

func (p *party) Result() (Result, error) {
	if p.err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrAborted, p.err)
	}
	if !p.done {
		return Result{}, errors.New("psi: session not finished")
	}
	return p.result, nil
}

func (p *party) Close() {
	p.key.Destroy()
	if !p.done && p.err == nil {
		p.err = errors.New("psi: role closed")
	}
}

// batchIndex checks that msg.Batch names one of n batches not seen yet
// and that the message carries want elements.
func batchIndex(msg Message, n int, seen func(k int) bool, want func(k int) int) (int, error) {
	if uint64(msg.Batch) >= uint64(n) {
		return 0, fmt.Errorf("%w: %s batch %d, only %d expected", ErrProtocol, msg.Type, msg.Batch, n)
	}
	k := int(msg.Batch)
	if seen(k) {
		return 0, fmt.Errorf("%w: %s batch %d repeated", ErrProtocol, msg.Type, k)
	}
	if w := want(k); msg.Count != w {
		return 0, fmt.Errorf("%w: %s batch %d has %d elements, want %d", ErrProtocol, msg.Type, k, msg.Count, w)
	}
	return k, nil
}

// ecdhGuest is the guest (bank) role.
//
// Messages: Start → hello. On the host's hello reply it sends up to Window
// batches of a·H(x_i), and one more for each batch the host answers (with
// its tags, or an ack in cardinality mode). Each batch of host points is
// acknowledged. When all tags and all host points are in, it computes the
// result and sends, in both-learn mode, the matched host positions, then
// done.
type ecdhGuest struct {
	party
	started, ready bool
	theirs         batches // the host's points
	tagLen         int
	nextSend       int    // next own batch to send
	answered       []bool // own batches the host answered
	answeredN      int
	tagsGot        []bool // host-tag batches received (own geometry)
	tagsN          int
	matcher        *Matcher
	// hostTags holds the tags of a·B_j per host batch received. It is a
	// map, not a slice sized by the host's announced m, so memory grows
	// only with data actually received.
	hostTags map[int][]byte
}

func (g *ecdhGuest) Start(ctx context.Context) ([]Message, error) {
	if err := g.usable(ctx); err != nil {
		return nil, err
	}
	if g.started {
		return nil, g.fail(fmt.Errorf("%w: guest started twice", ErrProtocol))
	}
	g.started = true
	return []Message{g.message(MsgHello, 0, helloBytes, g.hello().encode())}, nil
}

func (g *ecdhGuest) Handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := g.usable(ctx); err != nil {
		return nil, err
	}
	out, err := g.handle(ctx, msg)
	if err != nil {
		return nil, g.fail(fmt.Errorf("guest: %w", err))
	}
	return out, nil
}

func (g *ecdhGuest) handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := g.admit(msg); err != nil {
		return nil, err
	}
	if !g.started {
		return nil, fmt.Errorf("%w: %s before Start", ErrProtocol, msg.Type)
	}
	if msg.Type == MsgHelloReply {
		return g.onHelloReply(ctx, msg)
	}
	if !g.ready {
		return nil, fmt.Errorf("%w: %s before the host's hello", ErrProtocol, msg.Type)
	}
	switch msg.Type {
	case MsgHostTags:
		return g.onHostTags(ctx, msg)
	case MsgAck:
		return g.onAck(ctx, msg)
	case MsgHostPoints:
		return g.onHostPoints(msg)
	}
	return nil, fmt.Errorf("%w: guest does not accept %s", ErrProtocol, msg.Type)
}

func (g *ecdhGuest) onHelloReply(ctx context.Context, msg Message) ([]Message, error) {
	if g.ready {
		return nil, fmt.Errorf("%w: second hello reply", ErrProtocol)
	}
	h, err := parseHello(msg.Payload)
	if err != nil {
		return nil, err
	}
	if err := g.agree(h); err != nil {
		return nil, err
	}
	g.ready = true
	g.theirs = batches{total: h.setSize, per: h.batchSize}
	g.tagLen = TagBytes(g.mine.total, g.theirs.total)
	g.matcher = NewMatcher(g.tagLen, g.mine.total)
	g.answered = make([]bool, g.mine.count())
	g.tagsGot = make([]bool, g.mine.count())
	g.hostTags = make(map[int][]byte)
	out, err := g.sendWindow(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, g.maybeFinish()...), nil
}

// sendWindow blinds and returns own batches until Window are unanswered.
func (g *ecdhGuest) sendWindow(ctx context.Context) ([]Message, error) {
	var out []Message
	for g.nextSend < g.mine.count() && g.nextSend-g.answeredN < g.cfg.Window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k := g.nextSend
		start, n := g.mine.start(k), g.mine.len(k)
		buf := make([]byte, n*PointBytes)
		if err := g.key.HashAndBlind(g.dst, g.ids[start:start+n], buf); err != nil {
			return nil, err
		}
		out = append(out, g.message(MsgGuestPoints, k, PointBytes, buf))
		g.nextSend++
	}
	return out, nil
}

// answer records that the host answered own batch k and refills the window.
func (g *ecdhGuest) answer(ctx context.Context, k int) ([]Message, error) {
	g.answered[k] = true
	g.answeredN++
	return g.sendWindow(ctx)
}

func (g *ecdhGuest) onHostTags(ctx context.Context, msg Message) ([]Message, error) {
	if msg.ElemLen != g.tagLen {
		return nil, fmt.Errorf("%w: tags of %d bytes, want %d", ErrProtocol, msg.ElemLen, g.tagLen)
	}
	k, err := batchIndex(msg, g.mine.count(), func(k int) bool { return g.tagsGot[k] }, g.mine.len)
	if err != nil {
		return nil, err
	}
	var out []Message
	if g.cfg.Mode == ModeCardinality {
		// The shuffled tags come only after the host has every batch.
		if g.answeredN != g.mine.count() {
			return nil, fmt.Errorf("%w: shuffled tags before all batches were acknowledged", ErrProtocol)
		}
	} else {
		if k >= g.nextSend {
			return nil, fmt.Errorf("%w: tags for batch %d, which was not sent", ErrProtocol, k)
		}
		if out, err = g.answer(ctx, k); err != nil {
			return nil, err
		}
	}
	g.matcher.AddGuest(g.mine.start(k), msg.Payload)
	g.tagsGot[k] = true
	g.tagsN++
	return append(out, g.maybeFinish()...), nil
}

func (g *ecdhGuest) onAck(ctx context.Context, msg Message) ([]Message, error) {
	if g.cfg.Mode != ModeCardinality {
		return nil, fmt.Errorf("%w: ack from host outside cardinality mode", ErrProtocol)
	}
	if uint64(msg.Batch) >= uint64(g.nextSend) || g.answered[msg.Batch] {
		return nil, fmt.Errorf("%w: ack for batch %d, not sent or already acknowledged", ErrProtocol, msg.Batch)
	}
	return g.answer(ctx, int(msg.Batch))
}

func (g *ecdhGuest) onHostPoints(msg Message) ([]Message, error) {
	seen := func(k int) bool { _, ok := g.hostTags[k]; return ok }
	k, err := batchIndex(msg, g.theirs.count(), seen, g.theirs.len)
	if err != nil {
		return nil, err
	}
	tags := make([]byte, msg.Count*g.tagLen)
	if err := g.key.Reblind(msg.Payload, g.tagLen, tags); err != nil {
		return nil, fmt.Errorf("host points batch %d: %w", k, err)
	}
	g.hostTags[k] = tags
	out := []Message{g.message(MsgAck, k, 0, nil)}
	return append(out, g.maybeFinish()...), nil
}

// maybeFinish computes the result once every tag and host point is in.
func (g *ecdhGuest) maybeFinish() []Message {
	if g.tagsN != g.mine.count() || len(g.hostTags) != g.theirs.count() {
		return nil
	}
	n := g.mine.total
	matched := make([]bool, n)
	count := 0
	reveal := g.cfg.Mode == ModeBothLearn
	var positions []uint32 // host positions that matched, ascending
	for k := range g.theirs.count() {
		offset := g.theirs.start(k)
		g.matcher.MatchHostFunc(g.hostTags[k], func(j, i int) {
			if !matched[i] {
				matched[i] = true
				count++
			}
			pos := uint32(offset + j)
			if l := len(positions); reveal && (l == 0 || positions[l-1] != pos) {
				positions = append(positions, pos)
			}
		})
	}
	r := Result{Learned: true, Count: count, PeerSize: g.theirs.total}
	if g.cfg.Mode != ModeCardinality {
		r.Indices = make([]int, 0, count)
		for i, ok := range matched {
			if ok {
				r.Indices = append(r.Indices, i)
			}
		}
	}
	var out []Message
	var revealBatches int
	if reveal {
		for start := 0; start < len(positions); start += g.cfg.BatchSize {
			chunk := positions[start:min(start+g.cfg.BatchSize, len(positions))]
			payload := make([]byte, 0, len(chunk)*positionBytes)
			for _, j := range chunk {
				payload = binary.BigEndian.AppendUint32(payload, j)
			}
			out = append(out, g.message(MsgReveal, revealBatches, positionBytes, payload))
			revealBatches++
		}
	}
	done := make([]byte, doneBytes)
	binary.BigEndian.PutUint32(done[0:4], uint32(revealBatches))
	binary.BigEndian.PutUint32(done[4:8], uint32(len(positions)))
	out = append(out, g.message(MsgDone, 0, doneBytes, done))
	g.matcher, g.hostTags = nil, nil
	g.finish(r)
	return out
}

// ecdhHost is the host (data partner) role.
//
// Messages: nothing at Start. On the guest's hello it draws the secret
// permutation π and replies with its hello and up to Window batches of
// b·H(y_π(j)), then one more per acknowledgement. Each batch of guest
// points is answered with the tags of b·A_i in the same order, or, in
// cardinality mode, with an ack, and after the last batch with all tags
// shuffled. In both-learn mode it maps the revealed positions through π to
// its rows. The guest's done ends the session.
type ecdhHost struct {
	party
	ready  bool
	perm   []int   // π: position j of the sent stream is row perm[j]
	theirs batches // the guest's points
	tagLen int
	// guestGot holds the guest batches received: nil values, or in
	// cardinality mode their tags, kept until all are in and shuffled. A
	// map, so that memory follows the data received, not the announced n.
	guestGot  map[int][]byte
	nextSend  int
	acked     []bool
	ackedN    int
	revealed  []bool // host positions revealed (both-learn)
	revealSet map[uint32]bool
	rows      []int
}

func (h *ecdhHost) Start(ctx context.Context) ([]Message, error) {
	return nil, h.usable(ctx)
}

func (h *ecdhHost) Handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := h.usable(ctx); err != nil {
		return nil, err
	}
	out, err := h.handle(ctx, msg)
	if err != nil {
		return nil, h.fail(fmt.Errorf("host: %w", err))
	}
	return out, nil
}

func (h *ecdhHost) handle(ctx context.Context, msg Message) ([]Message, error) {
	if err := h.admit(msg); err != nil {
		return nil, err
	}
	if msg.Type == MsgHello {
		return h.onHello(ctx, msg)
	}
	if !h.ready {
		return nil, fmt.Errorf("%w: %s before the guest's hello", ErrProtocol, msg.Type)
	}
	switch msg.Type {
	case MsgGuestPoints:
		return h.onGuestPoints(msg)
	case MsgAck:
		return h.onAck(ctx, msg)
	case MsgReveal:
		return nil, h.onReveal(msg)
	case MsgDone:
		return nil, h.onDone(msg)
	}
	return nil, fmt.Errorf("%w: host does not accept %s", ErrProtocol, msg.Type)
}

func (h *ecdhHost) onHello(ctx context.Context, msg Message) ([]Message, error) {
	if h.ready {
		return nil, fmt.Errorf("%w: second hello", ErrProtocol)
	}
	hl, err := parseHello(msg.Payload)
	if err != nil {
		return nil, err
	}
	if err := h.agree(hl); err != nil {
		return nil, err
	}
	if h.perm, err = Shuffle(h.mine.total); err != nil {
		return nil, err
	}
	h.ready = true
	h.theirs = batches{total: hl.setSize, per: hl.batchSize}
	h.tagLen = TagBytes(h.theirs.total, h.mine.total)
	h.guestGot = make(map[int][]byte)
	h.acked = make([]bool, h.mine.count())
	out := []Message{h.message(MsgHelloReply, 0, helloBytes, h.hello().encode())}
	more, err := h.sendWindow(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// sendWindow blinds and returns own batches, in the permuted order, until
// Window are unacknowledged.
func (h *ecdhHost) sendWindow(ctx context.Context) ([]Message, error) {
	var out []Message
	for h.nextSend < h.mine.count() && h.nextSend-h.ackedN < h.cfg.Window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k := h.nextSend
		start, n := h.mine.start(k), h.mine.len(k)
		ids := make([][]byte, n)
		for i := range ids {
			ids[i] = h.ids[h.perm[start+i]]
		}
		buf := make([]byte, n*PointBytes)
		if err := h.key.HashAndBlind(h.dst, ids, buf); err != nil {
			return nil, err
		}
		out = append(out, h.message(MsgHostPoints, k, PointBytes, buf))
		h.nextSend++
	}
	return out, nil
}

func (h *ecdhHost) onGuestPoints(msg Message) ([]Message, error) {
	seen := func(k int) bool { _, ok := h.guestGot[k]; return ok }
	k, err := batchIndex(msg, h.theirs.count(), seen, h.theirs.len)
	if err != nil {
		return nil, err
	}
	tags := make([]byte, msg.Count*h.tagLen)
	if err := h.key.Reblind(msg.Payload, h.tagLen, tags); err != nil {
		return nil, fmt.Errorf("guest points batch %d: %w", k, err)
	}
	if h.cfg.Mode != ModeCardinality {
		h.guestGot[k] = nil
		return []Message{h.message(MsgHostTags, k, h.tagLen, tags)}, nil
	}
	h.guestGot[k] = tags
	out := []Message{h.message(MsgAck, k, 0, nil)}
	if len(h.guestGot) < h.theirs.count() {
		return out, nil
	}
	// All tags are in: shuffle them so that no tag can be tied to the
	// guest element it came from, and send them in the guest's geometry.
	all := make([]byte, 0, h.theirs.total*h.tagLen)
	for b := range h.theirs.count() {
		all = append(all, h.guestGot[b]...)
		h.guestGot[b] = nil
	}
	if err := shuffleRecords(all, h.tagLen); err != nil {
		return nil, err
	}
	for b := range h.theirs.count() {
		s, n := h.theirs.start(b), h.theirs.len(b)
		out = append(out, h.message(MsgHostTags, b, h.tagLen, all[s*h.tagLen:(s+n)*h.tagLen]))
	}
	return out, nil
}

func (h *ecdhHost) onAck(ctx context.Context, msg Message) ([]Message, error) {
	if uint64(msg.Batch) >= uint64(h.nextSend) || h.acked[msg.Batch] {
		return nil, fmt.Errorf("%w: ack for batch %d, not sent or already acknowledged", ErrProtocol, msg.Batch)
	}
	h.acked[msg.Batch] = true
	h.ackedN++
	return h.sendWindow(ctx)
}

func (h *ecdhHost) onReveal(msg Message) error {
	if h.cfg.Mode != ModeBothLearn {
		return fmt.Errorf("%w: reveal outside both-learn mode", ErrProtocol)
	}
	if h.revealSet == nil {
		h.revealSet = make(map[uint32]bool)
		h.revealed = make([]bool, h.mine.total)
	}
	if h.revealSet[msg.Batch] || len(h.revealSet) >= h.mine.total {
		return fmt.Errorf("%w: reveal batch %d repeated or too many", ErrProtocol, msg.Batch)
	}
	h.revealSet[msg.Batch] = true
	for i := range msg.Count {
		j := binary.BigEndian.Uint32(msg.Elem(i))
		if uint64(j) >= uint64(h.mine.total) || h.revealed[j] {
			return fmt.Errorf("%w: revealed position %d out of range or repeated", ErrProtocol, j)
		}
		h.revealed[j] = true
		h.rows = append(h.rows, h.perm[j])
	}
	return nil
}

func (h *ecdhHost) onDone(msg Message) error {
	if len(h.guestGot) != h.theirs.count() || h.ackedN != h.mine.count() {
		return fmt.Errorf("%w: done before every batch was exchanged", ErrProtocol)
	}
	batchesN := binary.BigEndian.Uint32(msg.Payload[0:4])
	total := binary.BigEndian.Uint32(msg.Payload[4:8])
	if uint64(batchesN) != uint64(len(h.revealSet)) || uint64(total) != uint64(len(h.rows)) {
		return fmt.Errorf("%w: done announces %d reveal batches of %d positions, got %d of %d",
			ErrProtocol, batchesN, total, len(h.revealSet), len(h.rows))
	}
	for b := range h.revealSet {
		if uint64(b) >= uint64(batchesN) {
			return fmt.Errorf("%w: reveal batch %d beyond the %d announced", ErrProtocol, b, batchesN)
		}
	}
	r := Result{PeerSize: h.theirs.total}
	if h.cfg.Mode == ModeBothLearn {
		rows := h.rows
		if rows == nil {
			rows = []int{}
		}
		slices.Sort(rows)
		r = Result{Learned: true, Count: len(rows), Indices: rows, PeerSize: h.theirs.total}
	}
	h.perm, h.revealed, h.revealSet, h.rows, h.guestGot = nil, nil, nil, nil, nil
	h.finish(r)
	return nil
}
