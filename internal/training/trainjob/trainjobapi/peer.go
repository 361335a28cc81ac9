package trainjobapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// ContentType is the media type of message bodies.
const ContentType = "application/octet-stream"

// Defaults of the transport's timing.
const (
	// DefaultMessageTimeout bounds one Send or Recv.
	DefaultMessageTimeout = 10 * time.Minute
	// DefaultPoll is how long the host holds a GET with no message
	// (below the node peer client's 10 s per-call deadline).
	DefaultPoll = 4 * time.Second
	// sendWindow is how many host→guest messages may wait unfetched.
	sendWindow = 8
	// inBuffer is how many guest→host messages may wait unread.
	inBuffer = 8
	// linger keeps a finished session for the guest's last fetches.
	linger = time.Minute
)

// Acceptor starts the host's side of a session the guest party opened
// with req, talking over t (typically hetero.NewHost(...).Run in a
// goroutine). It must not block on the run; an error refuses the session.
// done must be called when the host's run ends (also after an error).
type Acceptor func(party, session string, req trainjob.OpenRequest, t hetero.Transport, done func()) (trainjob.OpenAnswer, error)

// PeerOptions configure the peer API.
type PeerOptions struct {
	// Peers identifies the calling party (registered peers only).
	Peers authhttp.Peers
	// Accept starts the host's run for a new session; nil refuses all.
	Accept Acceptor
	// MessageTimeout bounds one Send or Recv of the host's end
	// (0: DefaultMessageTimeout); Poll bounds one long-poll GET (0:
	// DefaultPoll).
	MessageTimeout time.Duration
	Poll           time.Duration
	Log            *slog.Logger
}

// Peer serves the training peer API on a host.
type Peer struct {
	opts     PeerOptions
	mu       sync.Mutex
	sessions map[string]*session
}

// NewPeer returns the peer API.
func NewPeer(opts PeerOptions) *Peer {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MessageTimeout <= 0 {
		opts.MessageTimeout = DefaultMessageTimeout
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Peers.API == "" {
		opts.Peers.API = "the training peer API"
	}
	return &Peer{opts: opts, sessions: map[string]*session{}}
}

// Mount registers the peer routes.
func (p *Peer) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /train/v1/peer/sessions", p.peer(p.open))
	mux.HandleFunc("POST /train/v1/peer/sessions/{session}/messages/{seq}", p.peer(p.post))
	mux.HandleFunc("GET /train/v1/peer/sessions/{session}/messages/{seq}", p.peer(p.get))
	mux.HandleFunc("DELETE /train/v1/peer/sessions/{session}", p.peer(p.remove))
}

// Close ends every session.
func (p *Peer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, s := range p.sessions {
		s.close()
		delete(p.sessions, id)
	}
	return nil
}

// Sessions returns the number of open sessions.
func (p *Peer) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

func (p *Peer) peer(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		party, err := p.opts.Peers.Party(r)
		if err != nil {
			web.WriteError(w, r, p.opts.Log, err)
			return
		}
		r = r.WithContext(authhttp.WithParty(r.Context(), party))
		if err := h(w, r); err != nil {
			web.WriteError(w, r, p.opts.Log, err)
		}
	}
}

func (p *Peer) open(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, trainjob.MaxOpenBytes+1))
	if err != nil {
		return fmt.Errorf("read open request: %w", err)
	}
	req, err := trainjob.DecodeOpenRequest(b)
	if err != nil {
		return web.Errorf(http.StatusBadRequest, "invalid_request", "%s", web.Clip(err.Error(), 300))
	}
	if p.opts.Accept == nil {
		return web.Errorf(http.StatusConflict, "no_host_job", "this node has no training job waiting for a guest")
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	party := authhttp.PartyOf(r.Context())
	s := newSession(hex.EncodeToString(raw[:]), party, p.opts.MessageTimeout)
	p.mu.Lock()
	p.sessions[s.id] = s
	p.mu.Unlock()
	done := func() {
		s.finish()
		time.AfterFunc(linger, func() { p.drop(s.id) })
	}
	ans, err := p.opts.Accept(party, s.id, req, s, done)
	if err != nil {
		p.drop(s.id)
		return web.Errorf(http.StatusConflict, "refused", "%s", web.Clip(err.Error(), 300))
	}
	ans.Session = s.id
	web.WriteJSON(w, http.StatusCreated, ans)
	return nil
}

func (p *Peer) drop(id string) {
	p.mu.Lock()
	s := p.sessions[id]
	delete(p.sessions, id)
	p.mu.Unlock()
	if s != nil {
		s.close()
	}
}

func (p *Peer) lookup(r *http.Request) (*session, int64, error) {
	id := r.PathValue("session")
	p.mu.Lock()
	s := p.sessions[id]
	p.mu.Unlock()
	if s == nil || s.party != authhttp.PartyOf(r.Context()) {
		return nil, 0, web.Errorf(http.StatusNotFound, "session_not_found", "no such session")
	}
	seq := int64(-1)
	if v := r.PathValue("seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, web.Errorf(http.StatusBadRequest, "bad_sequence", "the sequence must be a non-negative integer")
		}
		seq = n
	}
	return s, seq, nil
}

func (p *Peer) post(w http.ResponseWriter, r *http.Request) error {
	s, seq, err := p.lookup(r)
	if err != nil {
		return err
	}
	if r.ContentLength > hetero.MaxMessageBytes {
		return web.Errorf(http.StatusRequestEntityTooLarge, "too_large", "a message is at most %d bytes", hetero.MaxMessageBytes)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, hetero.MaxMessageBytes+1))
	if err != nil {
		return fmt.Errorf("read message: %w", err)
	}
	if len(b) > hetero.MaxMessageBytes {
		return web.Errorf(http.StatusRequestEntityTooLarge, "too_large", "a message is at most %d bytes", hetero.MaxMessageBytes)
	}
	if _, err := hetero.Decode(b); err != nil {
		return web.Errorf(http.StatusBadRequest, "malformed", "%s", web.Clip(err.Error(), 300))
	}
	if err := s.deliver(r.Context(), seq, b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (p *Peer) get(w http.ResponseWriter, r *http.Request) error {
	s, seq, err := p.lookup(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.opts.Poll)
	defer cancel()
	b, err := s.fetch(ctx, seq)
	if err != nil {
		return err
	}
	if b == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

func (p *Peer) remove(w http.ResponseWriter, r *http.Request) error {
	s, _, err := p.lookup(r)
	if err != nil {
		return err
	}
	p.drop(s.id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// session is the host's end of one session; it implements
// hetero.Transport for the host's run.
type session struct {
	id, party string
	timeout   time.Duration

	postMu  sync.Mutex // serialises guest POSTs
	nextIn  int64      // next guest sequence expected
	in      chan []byte
	mu      sync.Mutex
	out     [][]byte // unacknowledged host→guest messages
	outBase int64    // sequence of out[0]
	changed chan struct{}
	done    chan struct{} // closed by close
	ended   bool          // the host run finished: no more sends
	once    sync.Once
}

func newSession(id, party string, timeout time.Duration) *session {
	return &session{id: id, party: party, timeout: timeout, in: make(chan []byte, inBuffer),
		changed: make(chan struct{}), done: make(chan struct{})}
}

// notify wakes everyone waiting for a change; s.mu is held.
func (s *session) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *session) close() { s.once.Do(func() { close(s.done) }) }

func (s *session) finish() {
	s.mu.Lock()
	s.ended = true
	s.notify()
	s.mu.Unlock()
}

var errGone = web.Errorf(http.StatusGone, "session_closed", "the session is closed")

// deliver queues guest message seq for the host's run.
func (s *session) deliver(ctx context.Context, seq int64, b []byte) error {
	s.postMu.Lock()
	defer s.postMu.Unlock()
	switch {
	case seq < s.nextIn:
		return nil // a retry of a delivered message
	case seq > s.nextIn:
		return web.Errorf(http.StatusConflict, "bad_sequence", "expected message %d, got %d", s.nextIn, seq)
	}
	select {
	case s.in <- b:
		s.nextIn++
		return nil
	case <-s.done:
		return errGone
	case <-ctx.Done():
		return web.Errorf(http.StatusServiceUnavailable, "busy", "the host is not reading: retry")
	}
}

// fetch acknowledges the messages before seq and returns message seq, or
// nil when none arrived before ctx ends.
func (s *session) fetch(ctx context.Context, seq int64) ([]byte, error) {
	for {
		s.mu.Lock()
		if seq > s.outBase {
			n := min(seq-s.outBase, int64(len(s.out)))
			clear(s.out[:n])
			s.out = s.out[n:]
			s.outBase += n
			s.notify()
		}
		if seq < s.outBase {
			s.mu.Unlock()
			return nil, web.Errorf(http.StatusConflict, "bad_sequence", "message %d was acknowledged", seq)
		}
		if i := seq - s.outBase; i < int64(len(s.out)) {
			b := s.out[i]
			s.mu.Unlock()
			return b, nil
		}
		ended, ch := s.ended, s.changed
		s.mu.Unlock()
		if ended {
			return nil, errGone
		}
		select {
		case <-ch:
		case <-s.done:
			return nil, errGone
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// Send implements hetero.Transport for the host.
func (s *session) Send(ctx context.Context, m hetero.Message) error {
	b, err := hetero.Encode(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for {
		s.mu.Lock()
		if len(s.out) < sendWindow {
			s.out = append(s.out, b)
			s.notify()
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
			return hetero.ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("send %s: the guest is not fetching: %w", m.Type, ctx.Err())
		}
	}
}

// Recv implements hetero.Transport for the host.
func (s *session) Recv(ctx context.Context) (hetero.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	select {
	case b := <-s.in:
		return hetero.Decode(b)
	case <-s.done:
		return hetero.Message{}, hetero.ErrClosed
	case <-ctx.Done():
		return hetero.Message{}, fmt.Errorf("receive: %w", ctx.Err())
	}
}

var _ hetero.Transport = (*session)(nil)
