package psijob

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Runner drives guest jobs: it reads the input, opens (or resumes) a
// session with the host through a Peer, exchanges the batches with a
// checkpoint after each, matches, and stores the result.
type Runner struct {
	store   Store
	inputs  Inputs
	peers   PeerDialer
	sealer  Sealer
	codec   KeyCodec
	consent ConsentFilter
	cache   ResultCache
	metrics *Metrics
	owner   string
	opts    Options
	log     *slog.Logger

	// held keeps the session key of every job that is not finished, so a
	// run interrupted in this process resumes even when keys cannot be
	// stored (psi.Key has no encoding).
	heldMu sync.Mutex
	held   map[string]heldKey
}

type heldKey struct {
	session string
	key     *psi.Key
}

func (r *Runner) holdKey(jobID, session string, k *psi.Key) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	if old, ok := r.held[jobID]; ok && old.key != k {
		old.key.Destroy()
	}
	r.held[jobID] = heldKey{session: session, key: k}
}

func (r *Runner) heldKey(jobID, session string) *psi.Key {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	if h, ok := r.held[jobID]; ok && h.session == session {
		return h.key
	}
	return nil
}

func (r *Runner) dropKey(jobID string) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	if h, ok := r.held[jobID]; ok {
		h.key.Destroy()
		delete(r.held, jobID)
	}
}

// RunnerDeps is what a Runner needs; Consent, Cache, Codec and Metrics are
// optional.
type RunnerDeps struct {
	Store   Store
	Inputs  Inputs
	Peers   PeerDialer
	Sealer  Sealer
	Codec   KeyCodec
	Consent ConsentFilter
	Cache   ResultCache
	Metrics *Metrics
	// Owner names this runner in job leases (unique per process).
	Owner string
}

// NewRunner returns a guest runner.
func NewRunner(d RunnerDeps, opts Options) *Runner {
	opts = opts.withDefaults()
	if d.Owner == "" {
		d.Owner, _ = NewSessionID()
	}
	return &Runner{store: d.Store, inputs: d.Inputs, peers: d.Peers, sealer: d.Sealer, codec: d.Codec, consent: d.Consent,
		cache: d.Cache, metrics: d.Metrics, owner: d.Owner, opts: opts, log: opts.Log.With("component", "psi-guest"),
		held: map[string]heldKey{}}
}

// Errors that end a run without finishing the job.
var (
	// ErrStopped: the job was cancelled or taken over while it ran.
	ErrStopped = errors.New("psi job stopped")
	// ErrInterrupted: the run's context ended (shutdown, or a test killing
	// the runner); the job stays running and resumes from its checkpoints.
	ErrInterrupted = errors.New("psi run interrupted")
)

// Run runs guest job id to its end and returns the job as it ended. When
// ctx ends first, the job is left to be resumed and the error wraps
// ErrInterrupted.
func (r *Runner) Run(ctx context.Context, id string) (Job, error) {
	now := r.opts.Now()
	j, err := r.store.ClaimJob(ctx, id, r.owner, now, now.Add(r.opts.LeaseTTL))
	if err != nil {
		return Job{}, fmt.Errorf("run psi job %s: %w", id, err)
	}
	if j.Role != RoleGuest {
		return j, fmt.Errorf("run psi job %s: %w: only guest jobs run", id, ErrInvalid)
	}
	g := &guestRun{r: r, job: j, log: r.log.With("job", j.ID, "peer", j.Peer.Party), start: now}
	runErr := g.run(ctx)
	return g.end(ctx, runErr)
}

// guestRun is one run of one guest job.
type guestRun struct {
	r     *Runner
	job   Job
	log   *slog.Logger
	peer  Peer
	start time.Time

	el      *Elements
	key     *psi.Key
	dst     []byte
	session string
	tagLen  int
	bs      int
	m       int

	mu        sync.Mutex // guards matcher, progress
	matcher   *psi.Matcher
	doneStart int64
	done      int64
	restarts  int
}

// localError is a protocol error the guest detected in the host's answer.
type localError struct{ msg string }

func (e *localError) Error() string { return "protocol error: " + e.msg }

func protocolErrorf(format string, args ...any) error {
	return &localError{msg: fmt.Sprintf(format, args...)}
}

// errRestart asks run to start a new session (the host lost the old one).
var errRestart = errors.New("restart session")

func (g *guestRun) run(ctx context.Context) error {
	j := g.job
	var filter func(context.Context, []string) ([]bool, error)
	if j.Purpose != "" {
		if g.r.consent == nil {
			return fmt.Errorf("%w: purpose %q needs the consent service in this node", ErrNoConsent, j.Purpose)
		}
		filter = func(ctx context.Context, raw []string) ([]bool, error) {
			return g.r.consent.Filter(ctx, j.Peer.Party, j.Purpose, raw)
		}
	}
	el, err := LoadElements(ctx, g.r.inputs, j.Input, j.Normalization, filter)
	if err != nil {
		return err
	}
	g.el = el
	if err := g.update(ctx, func(j *Job) {
		j.RowsRead, j.LocalCount, j.Duplicates, j.Invalid, j.Excluded = el.RowsRead, int64(len(el.IDs)), el.Duplicates, el.Invalid, el.Excluded
	}); err != nil {
		return err
	}
	if g.peer, err = g.r.peers(j); err != nil {
		return fmt.Errorf("peer %s: %w", j.Peer.Party, err)
	}
	for {
		err := g.openSession(ctx)
		if err == nil {
			err = g.exchange(ctx)
		}
		if !errors.Is(err, errRestart) {
			return err
		}
		if g.restarts++; g.restarts > 2 {
			return fmt.Errorf("the host lost the session %d times; giving up", g.restarts)
		}
		g.log.Warn("host lost the session: starting a new one from batch 0")
	}
}

// session resumes the job's session when it can, or opens a new one.
func (g *guestRun) openSession(ctx context.Context) error {
	j, n := g.job, len(g.el.IDs)
	req := OpenRequest{Version: ProtocolVersion, HostJob: j.PeerJob, Mode: j.Mode, Purpose: j.Purpose,
		GuestCount: n, BatchSize: j.BatchSize, Normalization: j.Normalization.Fingerprint()}
	held := g.r.heldKey(j.ID, j.Session)
	if j.Session != "" && g.restarts == 0 && bytes.Equal(j.InputDigest, g.el.Digest) && (held != nil || j.KeyEnc != nil && g.r.codec != nil) {
		key, err := held, error(nil)
		if key == nil {
			key, err = g.loadKey(ctx)
		}
		if err != nil {
			g.log.Warn("stored session key unusable: starting a new session", "err", err)
		} else {
			r := req
			r.Session = j.Session
			var resp OpenResponse
			err = g.call(ctx, "resume", func(ctx context.Context) (err error) {
				resp, err = g.peer.Open(ctx, r)
				return err
			})
			switch {
			case err == nil:
				if err := g.accept(resp, n); err != nil {
					return err
				}
				g.key, g.session = key, j.Session
				g.r.holdKey(j.ID, j.Session, key)
				g.log.Info("session resumed")
				return g.resumeProgress(ctx)
			case isCode(err, CodeSessionNotFound):
				g.log.Info("the host no longer knows the session: starting a new one")
			default:
				return err
			}
		}
	} else if j.Session != "" && !bytes.Equal(j.InputDigest, g.el.Digest) {
		g.log.Info("the input changed since the session began: starting a new one")
	}
	if j.Session != "" {
		req.Supersede = j.Session
		if err := g.r.store.DeleteCheckpoints(ctx, j.ID); err != nil {
			return err
		}
	}
	key, err := psi.NewKey()
	if err != nil {
		return err
	}
	var resp OpenResponse
	if err := g.call(ctx, "open", func(ctx context.Context) (err error) {
		resp, err = g.peer.Open(ctx, req)
		return err
	}); err != nil {
		return err
	}
	if err := g.accept(resp, n); err != nil {
		g.abort(resp.Session, err)
		return err
	}
	keyID := j.KeyID
	if keyID == "" {
		if keyID, err = g.r.sealer.NewDataKey(ctx); err != nil {
			return err
		}
	}
	var keyEnc []byte
	if g.r.codec != nil {
		raw, err := g.r.codec.Marshal(key)
		if err != nil {
			return err
		}
		if keyEnc, err = g.r.sealer.Encrypt(ctx, keyID, raw, keyAAD(j.ID, resp.Session)); err != nil {
			return err
		}
		clear(raw)
	}
	g.key, g.session = key, resp.Session
	g.r.holdKey(j.ID, resp.Session, key)
	g.mu.Lock()
	g.done, g.doneStart = 0, 0
	g.mu.Unlock()
	return g.update(ctx, func(jj *Job) {
		jj.Session, jj.TagLen, jj.PeerCount, jj.InputDigest = resp.Session, resp.TagLen, int64(resp.HostCount), g.el.Digest
		jj.KeyID, jj.KeyEnc = keyID, keyEnc
		jj.DoneItems, jj.TotalItems, jj.Rate = 0, g.total(), 0
	})
}

func keyAAD(jobID, session string) []byte { return []byte("psi-guest-key|" + jobID + "|" + session) }

func (g *guestRun) loadKey(ctx context.Context) (*psi.Key, error) {
	raw, err := g.r.sealer.Decrypt(ctx, g.job.KeyID, g.job.KeyEnc, keyAAD(g.job.ID, g.job.Session))
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return g.r.codec.Unmarshal(raw)
}

// accept checks the host's handshake answer.
func (g *guestRun) accept(resp OpenResponse, n int) error {
	switch {
	case !ValidSessionID(resp.Session):
		return protocolErrorf("the host answered a malformed session id")
	case resp.HostCount < 0 || resp.HostCount > MaxSetSize:
		return protocolErrorf("the host announced %d elements", resp.HostCount)
	case resp.BatchSize < 1 || resp.BatchSize > g.job.BatchSize:
		return protocolErrorf("the host chose batch size %d, the guest offered at most %d", resp.BatchSize, g.job.BatchSize)
	case resp.TagLen != tagBytes(n, resp.HostCount):
		return protocolErrorf("the host chose %d-byte tags, psi.TagBytes(%d, %d) is %d", resp.TagLen, n, resp.HostCount, tagBytes(n, resp.HostCount))
	}
	g.tagLen, g.bs, g.m = resp.TagLen, resp.BatchSize, resp.HostCount
	g.dst = psi.DST([]byte(resp.Session))
	return nil
}

// tagBytes is psi.TagBytes with empty sets counted as one element.
func tagBytes(n, m int) int { return psi.TagBytes(max(n, 1), max(m, 1)) }

func (g *guestRun) total() int64 {
	n, m := int64(len(g.el.IDs)), int64(g.m)
	if n == 0 || m == 0 {
		return 0
	}
	if g.job.Mode == ModeCardinality {
		return 2*n + m
	}
	return n + m
}

// resumeProgress counts the items of the finished batches.
func (g *guestRun) resumeProgress(ctx context.Context) error {
	var done int64
	for _, phase := range []int{PhaseGuestTags, PhaseShuffledTags, PhaseHostMatches} { // reveals are not counted
		cps, err := g.r.store.Checkpoints(ctx, g.job.ID, phase)
		if err != nil {
			return err
		}
		size := len(g.el.IDs)
		if phase == PhaseHostMatches {
			size = g.m
		}
		for _, c := range cps {
			if k := BatchLen(size, g.bs, c.Batch); k > 0 && c.Session == g.session {
				done += int64(k)
			}
		}
	}
	g.mu.Lock()
	g.done, g.doneStart = done, done
	g.mu.Unlock()
	return g.update(ctx, func(j *Job) { j.DoneItems, j.TotalItems = done, g.total() })
}

// exchange runs the batches of the session and stores the result; in
// both-learn mode it then reveals the matched host positions.
func (g *guestRun) exchange(ctx context.Context) error {
	n := len(g.el.IDs)
	var matched, positions []int
	if n > 0 && g.m > 0 {
		g.matcher = psi.NewMatcher(g.tagLen, n)
		if err := g.guestPhase(ctx); err != nil {
			return err
		}
		if g.job.Mode == ModeCardinality {
			if err := g.shufflePhase(ctx); err != nil {
				return err
			}
		}
		var err error
		if matched, positions, err = g.hostPhase(ctx); err != nil {
			return err
		}
	}
	if err := g.saveResult(ctx, matched); err != nil {
		return err
	}
	var fin FinishRequest
	if g.job.Mode == ModeBoth {
		var err error
		if fin, err = g.revealPhase(ctx, positions); err != nil {
			return err
		}
	}
	if err := g.call(ctx, "finish", func(ctx context.Context) error { return g.peer.Finish(ctx, g.session, fin) }); err != nil {
		if g.job.Mode == ModeBoth {
			// The host's result is part of the job: without it the job failed.
			return fmt.Errorf("the host did not take the revealed intersection: %w", err)
		}
		// The guest has its result; the host's session will expire.
		g.log.Warn("could not tell the host the session finished", "err", err)
	}
	size := int64(len(matched))
	g.job.IntersectionSize = &size
	return nil
}

// checkpoints loads the finished batches of phase in this session.
func (g *guestRun) checkpoints(ctx context.Context, phase, size int) (map[int][]byte, error) {
	cps, err := g.r.store.Checkpoints(ctx, g.job.ID, phase)
	if err != nil {
		return nil, err
	}
	out := make(map[int][]byte, len(cps))
	for _, c := range cps {
		if c.Session != g.session || BatchLen(size, g.bs, c.Batch) < 0 {
			continue
		}
		out[c.Batch] = c.Data
	}
	return out, nil
}

// missing lists the batches of a set of size that have no checkpoint.
func (g *guestRun) missing(size int, have map[int][]byte) []int {
	var out []int
	for b := range batchCount(size, g.bs) {
		if _, ok := have[b]; !ok {
			out = append(out, b)
		}
	}
	return out
}

func (g *guestRun) addGuest(b int, tags []byte) error {
	n := len(g.el.IDs)
	lo, hi := batchRange(n, g.bs, b)
	if len(tags) != (hi-lo)*g.tagLen {
		return protocolErrorf("batch %d: %d bytes of tags for %d elements of %d bytes", b, len(tags), hi-lo, g.tagLen)
	}
	g.mu.Lock()
	g.matcher.AddGuest(lo, tags)
	g.mu.Unlock()
	return nil
}

// guestPhase sends the guest's blinded points, batch by batch.
func (g *guestRun) guestPhase(ctx context.Context) error {
	n := len(g.el.IDs)
	have, err := g.checkpoints(ctx, PhaseGuestTags, n)
	if err != nil {
		return err
	}
	card := g.job.Mode == ModeCardinality
	if !card {
		for b, tags := range have {
			if err := g.addGuest(b, tags); err != nil {
				return fmt.Errorf("checkpoint of %w", err)
			}
		}
	}
	return g.forEach(ctx, g.missing(n, have), func(ctx context.Context, b int) error {
		lo, hi := batchRange(n, g.bs, b)
		points, err := hashAndBlind(g.key, g.dst, g.el.IDs[lo:hi])
		if err != nil {
			return err
		}
		var tags []byte
		if err := g.call(ctx, fmt.Sprintf("guest batch %d", b), func(ctx context.Context) (err error) {
			tags, err = g.peer.SendBatch(ctx, g.session, b, points)
			return err
		}); err != nil {
			return err
		}
		g.r.metrics.traffic(RoleGuest, "sent", hi-lo, len(points))
		g.r.metrics.traffic(RoleGuest, "received", len(tags)/max(g.tagLen, 1), len(tags))
		if card {
			if len(tags) != 0 {
				return protocolErrorf("batch %d: the host answered tags in cardinality mode", b)
			}
		} else if err := g.addGuest(b, tags); err != nil {
			return err
		}
		if err := g.r.store.SaveCheckpoint(ctx, Checkpoint{JobID: g.job.ID, Phase: PhaseGuestTags, Batch: b, Session: g.session, Data: nonNil(tags), CreatedAt: g.r.opts.Now()}); err != nil {
			return err
		}
		return g.progress(ctx, hi-lo)
	})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// shufflePhase fetches the guest's tags in the host's shuffled order
// (cardinality mode).
func (g *guestRun) shufflePhase(ctx context.Context) error {
	n := len(g.el.IDs)
	have, err := g.checkpoints(ctx, PhaseShuffledTags, n)
	if err != nil {
		return err
	}
	for b, tags := range have {
		if err := g.addGuest(b, tags); err != nil {
			return fmt.Errorf("checkpoint of %w", err)
		}
	}
	return g.forEach(ctx, g.missing(n, have), func(ctx context.Context, b int) error {
		var tags []byte
		if err := g.call(ctx, fmt.Sprintf("shuffled tags %d", b), func(ctx context.Context) (err error) {
			tags, err = g.peer.ShuffledTags(ctx, g.session, b)
			return err
		}); err != nil {
			return err
		}
		g.r.metrics.traffic(RoleGuest, "received", len(tags)/g.tagLen, len(tags))
		if err := g.addGuest(b, tags); err != nil {
			return err
		}
		if err := g.r.store.SaveCheckpoint(ctx, Checkpoint{JobID: g.job.ID, Phase: PhaseShuffledTags, Batch: b, Session: g.session, Data: tags, CreatedAt: g.r.opts.Now()}); err != nil {
			return err
		}
		lo, hi := batchRange(n, g.bs, b)
		return g.progress(ctx, hi-lo)
	})
}

// hostPhase fetches the host's points, re-blinds and matches them. It
// returns the matched guest indices and, in both-learn mode, the matched
// host positions (both ascending).
func (g *guestRun) hostPhase(ctx context.Context) (matchedIdx, positions []int, err error) {
	n := len(g.el.IDs)
	both := g.job.Mode == ModeBoth
	have, err := g.checkpoints(ctx, PhaseHostMatches, g.m)
	if err != nil {
		return nil, nil, err
	}
	var havePos map[int][]byte
	if both {
		if havePos, err = g.checkpoints(ctx, PhaseHostPositions, g.m); err != nil {
			return nil, nil, err
		}
		for b := range have {
			if _, ok := havePos[b]; !ok {
				delete(have, b) // matched before its positions were saved: redo it
			}
		}
	}
	matched := make([]bool, n)
	var hostPos []int
	var mu sync.Mutex
	mark := func(idx, pos []int) {
		mu.Lock()
		for _, i := range idx {
			matched[i] = true
		}
		hostPos = append(hostPos, pos...)
		mu.Unlock()
	}
	for b, data := range have {
		idx, err := decodeInts(data, n)
		if err != nil {
			return nil, nil, fmt.Errorf("checkpoint of host batch %d: %w", b, err)
		}
		var pos []int
		if both {
			lo, hi := batchRange(g.m, g.bs, b)
			if pos, err = decodeInts(havePos[b], hi); err != nil || (len(pos) > 0 && pos[0] < lo) {
				return nil, nil, fmt.Errorf("checkpoint of host batch %d positions: corrupt", b)
			}
		}
		mark(idx, pos)
	}
	err = g.forEach(ctx, g.missing(g.m, have), func(ctx context.Context, b int) error {
		lo, hi := batchRange(g.m, g.bs, b)
		var points []byte
		if err := g.call(ctx, fmt.Sprintf("host batch %d", b), func(ctx context.Context) (err error) {
			points, err = g.peer.HostBatch(ctx, g.session, b)
			return err
		}); err != nil {
			return err
		}
		g.r.metrics.traffic(RoleGuest, "received", hi-lo, len(points))
		if len(points) != (hi-lo)*PointBytes {
			return protocolErrorf("host batch %d: %d bytes for %d points", b, len(points), hi-lo)
		}
		tags, err := reblind(g.key, points, g.tagLen)
		if errors.Is(err, psi.ErrInvalidPoint) {
			return protocolErrorf("host batch %d holds an invalid point", b)
		}
		if err != nil {
			return err
		}
		var idx, pos []int
		g.mu.Lock()
		g.matcher.MatchHostFunc(tags, func(j, i int) {
			idx = append(idx, i)
			if l := len(pos); both && (l == 0 || pos[l-1] != lo+j) {
				pos = append(pos, lo+j)
			}
		})
		g.mu.Unlock()
		slices.Sort(idx)
		idx = slices.Compact(idx)
		for _, i := range idx {
			if i < 0 || i >= n {
				return fmt.Errorf("matcher returned index %d of %d", i, n)
			}
		}
		mark(idx, pos)
		if both {
			if err := g.r.store.SaveCheckpoint(ctx, Checkpoint{JobID: g.job.ID, Phase: PhaseHostPositions, Batch: b, Session: g.session, Data: encodeInts(pos), CreatedAt: g.r.opts.Now()}); err != nil {
				return err
			}
		}
		if err := g.r.store.SaveCheckpoint(ctx, Checkpoint{JobID: g.job.ID, Phase: PhaseHostMatches, Batch: b, Session: g.session, Data: encodeInts(idx), CreatedAt: g.r.opts.Now()}); err != nil {
			return err
		}
		return g.progress(ctx, hi-lo)
	})
	if err != nil {
		return nil, nil, err
	}
	var out []int
	for i, ok := range matched {
		if ok {
			out = append(out, i)
		}
	}
	slices.Sort(hostPos)
	return out, slices.Compact(hostPos), nil
}

// revealPhase sends the matched host positions, ascending, in batches of
// the session's batch size (both-learn mode), each checkpointed once the
// host acknowledged it, and returns what Finish announces.
func (g *guestRun) revealPhase(ctx context.Context, positions []int) (FinishRequest, error) {
	f := FinishRequest{RevealBatches: batchCount(len(positions), g.bs), Revealed: len(positions)}
	have, err := g.checkpoints(ctx, PhaseReveal, len(positions))
	if err != nil {
		return f, err
	}
	err = g.forEach(ctx, g.missing(len(positions), have), func(ctx context.Context, b int) error {
		lo, hi := batchRange(len(positions), g.bs, b)
		if err := g.call(ctx, fmt.Sprintf("reveal batch %d", b), func(ctx context.Context) error {
			return g.peer.Reveal(ctx, g.session, b, positions[lo:hi])
		}); err != nil {
			return err
		}
		g.r.metrics.traffic(RoleGuest, "sent", hi-lo, (hi-lo)*PositionBytes)
		return g.r.store.SaveCheckpoint(ctx, Checkpoint{JobID: g.job.ID, Phase: PhaseReveal, Batch: b, Session: g.session, Data: []byte{}, CreatedAt: g.r.opts.Now()})
	})
	return f, err
}

// saveResult stores the matched rows (and their identifiers, encrypted) in
// chunks; a cardinality job stores none.
func (g *guestRun) saveResult(ctx context.Context, matched []int) error {
	var chunks []ResultChunk
	if g.job.Mode != ModeCardinality {
		per := g.r.opts.ResultChunk
		for c := 0; c*per < len(matched); c++ {
			part := matched[c*per : min((c+1)*per, len(matched))]
			rows := make([]int, len(part))
			var ids []byte
			for i, e := range part {
				rows[i] = g.el.Rows[e]
				ids = appendString(ids, g.el.IDs[e])
			}
			enc, err := g.r.sealer.Encrypt(ctx, g.job.KeyID, ids, resultAAD(g.job.ID, c))
			if err != nil {
				return err
			}
			chunks = append(chunks, ResultChunk{JobID: g.job.ID, Chunk: c, Rows: encodeInts(rows), IDsEnc: enc})
		}
	}
	return g.r.store.SaveResult(ctx, g.job.ID, chunks)
}

func resultAAD(jobID string, chunk int) []byte {
	return fmt.Appendf(nil, "psi-result|%s|%d", jobID, chunk)
}

// forEach runs fn on batches with up to Window of them in flight, and
// stops at the first error.
func (g *guestRun) forEach(ctx context.Context, batches []int, fn func(ctx context.Context, b int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, g.r.opts.Window)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
loop:
	for _, b := range batches {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, b); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// progress counts k finished items, renews the lease and notices a job
// cancelled or taken over meanwhile.
func (g *guestRun) progress(ctx context.Context, k int) error {
	g.mu.Lock()
	g.done += int64(k)
	done, rate := g.done, float64(g.done-g.doneStart)/max(g.r.opts.Now().Sub(g.start).Seconds(), 1e-3)
	g.mu.Unlock()
	var stopped error
	_, err := g.r.store.UpdateJob(ctx, g.job.ID, func(j *Job) error {
		if j.Status != StatusRunning || j.Owner != g.r.owner {
			stopped = fmt.Errorf("%w: job is %s (owner %q)", ErrStopped, j.Status, j.Owner)
			return stopped
		}
		j.DoneItems, j.Rate = max(j.DoneItems, done), rate
		j.LeaseUntil = g.r.opts.Now().Add(g.r.opts.LeaseTTL)
		j.UpdatedAt = g.r.opts.Now()
		return nil
	})
	if stopped != nil {
		return stopped
	}
	return err
}

// update changes the job in the store and in g.
func (g *guestRun) update(ctx context.Context, fn func(*Job)) error {
	j, err := g.r.store.UpdateJob(ctx, g.job.ID, func(j *Job) error {
		if j.Status != StatusRunning || j.Owner != g.r.owner {
			return fmt.Errorf("%w: job is %s", ErrStopped, j.Status)
		}
		fn(j)
		j.UpdatedAt = g.r.opts.Now()
		return nil
	})
	if err != nil {
		return err
	}
	g.job = j
	return nil
}

// call runs one peer call under CallTimeout and retries what is worth
// retrying until the peer has failed for PeerDeadline.
func (g *guestRun) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var firstFail time.Time
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, g.r.opts.CallTimeout)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !temporary(err) {
			if isCode(err, CodeSessionNotFound) && what != "resume" && what != "open" {
				return errRestart
			}
			return err
		}
		now := time.Now()
		if firstFail.IsZero() {
			firstFail = now
		}
		if now.Add(backoff).Sub(firstFail) > g.r.opts.PeerDeadline {
			return fmt.Errorf("%w: peer %s did not answer %s for %s: %v", ErrPeerUnavailable, g.job.Peer.Party, what, g.r.opts.PeerDeadline, err)
		}
		g.log.Debug("peer call failed, retrying", "call", what, "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// temporary reports whether a peer error is worth retrying.
func temporary(err error) bool {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Temporary
	}
	switch {
	case errors.Is(err, ErrNotReady):
		return true
	case errors.Is(err, ErrSessionClosed), errors.Is(err, ErrSessionNotFound), errors.Is(err, ErrProtocol),
		errors.Is(err, ErrNoHostJob), errors.Is(err, ErrMismatch), errors.Is(err, ErrBatchTooLarge):
		return false
	}
	var le *localError
	return !errors.As(err, &le) && !errors.Is(err, context.Canceled)
}

// isCode reports whether err is the peer's refusal with code (over HTTP or
// from an in-process host).
func isCode(err error, code string) bool {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Code == code
	}
	switch code {
	case CodeSessionNotFound:
		return errors.Is(err, ErrSessionNotFound)
	}
	return false
}

// abort tells the host the session is over because of err (best effort).
func (g *guestRun) abort(session string, err error) {
	if session == "" || g.peer == nil {
		return
	}
	code, reason := CodeCancelled, "the guest's job failed: "+err.Error()
	var le *localError
	if errors.As(err, &le) {
		code, reason = SessionCodeAborted, "the guest found a "+err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.r.opts.CallTimeout)
	defer cancel()
	if cerr := g.peer.Cancel(ctx, session, code, reason); cerr != nil {
		g.log.Warn("could not tell the host the session ended", "err", cerr)
	}
}

// end writes the outcome of a run.
func (g *guestRun) end(ctx context.Context, runErr error) (Job, error) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := g.r.opts.Now()
	if runErr != nil && ctx.Err() != nil {
		// Cancelled by the service, or the node is stopping: look at why.
		j, err := g.r.store.GetJob(bg, g.job.ID)
		if err == nil && j.Status == StatusCancelled {
			g.abort(g.session, errors.New("cancelled by the guest's operator"))
			g.finishKeys(bg, j)
			return j, nil
		}
		// Release the lease so a restart resumes at once.
		_, _ = g.r.store.UpdateJob(bg, g.job.ID, func(j *Job) error {
			if j.Owner != g.r.owner || j.Status != StatusRunning {
				return errNoChange
			}
			j.LeaseUntil, j.Rate = time.Time{}, 0
			return nil
		})
		return g.job, fmt.Errorf("%w: %v", ErrInterrupted, runErr)
	}
	if errors.Is(runErr, ErrStopped) {
		j, err := g.r.store.GetJob(bg, g.job.ID)
		if err != nil {
			return g.job, err
		}
		if j.Status == StatusCancelled {
			g.abort(g.session, errors.New("cancelled by the guest's operator"))
		}
		if j.Status.Final() {
			g.finishKeys(bg, j)
		}
		return j, runErr
	}
	status, msg := StatusDone, ""
	if runErr != nil {
		status, msg = outcome(g.job.Peer.Party, runErr)
		if !isPeerClosed(runErr) {
			g.abort(g.session, runErr)
		}
		g.log.Warn("psi job ended", "status", status, "reason", msg)
	}
	j, err := g.r.store.UpdateJob(bg, g.job.ID, func(j *Job) error {
		if j.Status.Final() {
			return errNoChange
		}
		j.Status, j.Error, j.FinishedAt, j.UpdatedAt = status, msg, now, now
		j.LeaseUntil, j.KeyEnc = time.Time{}, nil
		if status == StatusDone {
			j.IntersectionSize = g.job.IntersectionSize
			j.DoneItems = j.TotalItems
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		j, err = g.r.store.GetJob(bg, g.job.ID)
	}
	if err != nil {
		return g.job, err
	}
	if j.Status.Final() {
		g.finishKeys(bg, j)
	}
	if status == StatusDone && j.Status == StatusDone {
		g.r.metrics.finished(RoleGuest, now.Sub(j.StartedAt))
		g.cacheResult(bg, j)
		g.log.Info("psi job done", "local_count", j.LocalCount, "peer_count", j.PeerCount, "intersection", *j.IntersectionSize, "duplicates", j.Duplicates)
	}
	return j, nil
}

// finishKeys drops what only a resume needed: checkpoints, and — when the
// job has no result to read — its data key.
func (g *guestRun) finishKeys(ctx context.Context, j Job) {
	g.r.dropKey(j.ID)
	if err := g.r.store.DeleteCheckpoints(ctx, j.ID); err != nil {
		g.log.Warn("delete checkpoints", "err", err)
	}
	if j.Status != StatusDone && j.KeyID != "" {
		if err := g.r.sealer.DestroyDataKey(ctx, j.KeyID); err != nil {
			g.log.Warn("destroy job key", "err", err)
		}
	}
}

func (g *guestRun) cacheResult(ctx context.Context, j Job) {
	if g.r.cache == nil || j.Mode == ModeCardinality {
		return
	}
	var rows []int
	err := g.r.store.ResultChunks(ctx, j.ID, func(c ResultChunk) error {
		v, err := decodeInts(c.Rows, MaxSetSize)
		rows = append(rows, v...)
		return err
	})
	if err == nil {
		err = g.r.cache.Set(ctx, cacheKey(j.ID), encodeInts(rows))
	}
	if err != nil {
		g.log.Warn("cache psi result", "err", err)
	}
}

func cacheKey(jobID string) string { return "rows:" + jobID }

func isPeerClosed(err error) bool {
	var pe *PeerError
	var ce *ClosedError
	if errors.As(err, &ce) {
		return true
	}
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "session_") || pe.Code == CodeProtocol || pe.Code == CodeInvalidPoint
	}
	return errors.Is(err, ErrProtocol) || errors.Is(err, ErrSessionNotFound)
}

// outcome turns a run's error into the job's status and a clear reason.
func outcome(party string, err error) (Status, string) {
	var (
		ce *ClosedError
		pe *PeerError
		le *localError
		ve *ValidationError
	)
	switch {
	case errors.As(err, &ce):
		if ce.Code == CodeCancelled {
			return StatusCancelled, fmt.Sprintf("cancelled by %s: %s", party, ce.Reason)
		}
		return StatusFailed, fmt.Sprintf("%s closed the session (%s): %s", party, ce.Code, ce.Reason)
	case errors.As(err, &le):
		return StatusFailed, le.Error()
	case errors.Is(err, ErrPeerUnavailable):
		return StatusFailed, err.Error()
	case errors.As(err, &pe) && pe.Code != "":
		switch pe.Code {
		case CodeProtocol, CodeInvalidPoint:
			return StatusFailed, fmt.Sprintf("%s aborted the session: %s", party, pe.Message)
		}
		return StatusFailed, fmt.Sprintf("%s refused: %s (%s)", party, pe.Message, pe.Code)
	case errors.As(err, &ve):
		return StatusFailed, "invalid input: " + ve.Error()
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrNoHostJob), errors.Is(err, ErrMismatch), errors.Is(err, ErrSessionNotFound):
		return StatusFailed, fmt.Sprintf("%s refused: %v", party, err)
	}
	return StatusFailed, err.Error()
}

// appendString appends a length-prefixed string.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readStrings splits what appendString wrote.
func readStrings(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("corrupt identifier list")
		}
		out = append(out, string(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	return out, nil
}
