package psijob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Sessions is the host's side of the protocol: it opens sessions for
// registered guests on the host's pending jobs, answers their batches and
// serves the host's points, and expires sessions that fall silent.
type Sessions struct {
	store   Store
	inputs  Inputs
	sealer  Sealer
	codec   KeyCodec
	metrics *Metrics
	allowed func(party string) bool
	opts    Options
	log     *slog.Logger

	openMu sync.Mutex // one handshake at a time picks a host job
	mu     sync.Mutex
	live   map[string]*hostSession
}

// SessionsDeps is what Sessions needs.
type SessionsDeps struct {
	Store   Store
	Inputs  Inputs
	Sealer  Sealer
	Codec   KeyCodec
	Metrics *Metrics
	// Allowed reports whether a party is a registered peer.
	Allowed func(party string) bool
}

// NewSessions returns the host's session manager.
func NewSessions(d SessionsDeps, opts Options) *Sessions {
	opts = opts.withDefaults()
	return &Sessions{store: d.Store, inputs: d.Inputs, sealer: d.Sealer, codec: d.Codec, metrics: d.Metrics,
		allowed: d.Allowed, opts: opts, log: opts.Log.With("component", "psi-host"), live: map[string]*hostSession{}}
}

// hostSession is an open session in memory.
type hostSession struct {
	mu       sync.Mutex
	s        Session
	keyMu    sync.RWMutex // held for reading while the key computes; Destroy takes it
	key      *psi.Key     // nil once the session closed
	perm     []int        // position in the served order → host element
	gperm    []int        // cardinality: shuffled position → guest element
	elems    []string
	rows     []int // input row of each element (both-learn: the host's result)
	dst      []byte
	shuffled []byte // cardinality: every guest tag in shuffled order, once all arrived
	served   map[int]bool
	lastSeen time.Time
	closed   *ClosedError
	learnMu  sync.Mutex // serialises concurrent Finish calls computing the host's result
}

// Open answers a guest's handshake.
func (h *Sessions) Open(ctx context.Context, party string, r OpenRequest) (OpenResponse, error) {
	if h.allowed == nil || !h.allowed(party) {
		return OpenResponse{}, fmt.Errorf("%w: party %q is not a registered peer", ErrSessionNotFound, party)
	}
	if err := r.Validate(); err != nil {
		return OpenResponse{}, err
	}
	if r.Session != "" {
		return h.resume(ctx, party, r)
	}
	h.openMu.Lock()
	defer h.openMu.Unlock()
	now := h.opts.Now()
	preferred := r.HostJob
	if r.Supersede != "" {
		if old, err := h.store.GetSession(ctx, r.Supersede); err == nil && old.Peer == party {
			if old.Status == SessionOpen {
				h.close(ctx, old.ID, SessionExpired, SessionCodeSuperseded, "replaced by a new session of the guest", StatusPending)
			}
			if preferred == "" {
				preferred = old.JobID
			}
		}
	}
	job, err := h.pickJob(ctx, party, r, preferred)
	if err != nil {
		return OpenResponse{}, err
	}
	if fp := job.Normalization.Fingerprint(); fp != r.Normalization {
		return OpenResponse{}, fmt.Errorf("%w: normalisation differs (guest %s, host %s = %s)", ErrMismatch, r.Normalization, fp, describeNorm(job.Normalization))
	}
	if !job.Mode.serves(r.Mode) {
		return OpenResponse{}, modeMismatch(job.Mode, r.Mode)
	}
	el, err := LoadElements(ctx, h.inputs, job.Input, job.Normalization, nil)
	if err != nil {
		h.failJob(ctx, job.ID, "cannot read the input: "+err.Error())
		return OpenResponse{}, fmt.Errorf("%w: the host's job failed reading its input", ErrNoHostJob)
	}
	n, m := r.GuestCount, len(el.IDs)
	bs := min(r.BatchSize, job.BatchSize, h.opts.BatchSize)
	key, err := psi.NewKey()
	if err != nil {
		return OpenResponse{}, err
	}
	perm, err := psi.Shuffle(m)
	if err != nil {
		return OpenResponse{}, err
	}
	var gperm []int
	if r.Mode == ModeCardinality {
		if gperm, err = psi.Shuffle(n); err != nil {
			return OpenResponse{}, err
		}
	}
	id, err := NewSessionID()
	if err != nil {
		return OpenResponse{}, err
	}
	sess := Session{ID: id, JobID: job.ID, Peer: party, Status: SessionOpen, Mode: r.Mode, GuestCount: n, HostCount: m,
		BatchSize: bs, TagLen: tagBytes(n, m), Fingerprint: r.Normalization, InputDigest: el.Digest, CreatedAt: now, LastSeen: now}
	if h.codec != nil {
		if sess.KeyID, err = h.sealer.NewDataKey(ctx); err != nil {
			return OpenResponse{}, err
		}
		raw, err := h.codec.Marshal(key)
		if err != nil {
			return OpenResponse{}, err
		}
		if sess.KeyEnc, err = h.sealer.Encrypt(ctx, sess.KeyID, raw, sessionAAD(id, "key")); err != nil {
			return OpenResponse{}, err
		}
		clear(raw)
		if sess.PermEnc, err = h.sealer.Encrypt(ctx, sess.KeyID, encodePerms(perm, gperm), sessionAAD(id, "perm")); err != nil {
			return OpenResponse{}, err
		}
	}
	// Take the job first: across replicas the job row decides who wins.
	total := int64(n + m)
	if r.Mode == ModeCardinality {
		total += int64(n)
	}
	if _, err := h.store.UpdateJob(ctx, job.ID, func(j *Job) error {
		if j.Status != StatusPending {
			return fmt.Errorf("%w: the host job was taken meanwhile", ErrNoHostJob)
		}
		j.Status, j.Session, j.Error = StatusRunning, id, ""
		j.RowsRead, j.LocalCount, j.Duplicates, j.Invalid, j.PeerCount = el.RowsRead, int64(m), el.Duplicates, el.Invalid, int64(n)
		j.DoneItems, j.TotalItems, j.TagLen, j.Rate = 0, total, sess.TagLen, 0
		if j.StartedAt.IsZero() {
			j.StartedAt = now
		}
		j.UpdatedAt = now
		return nil
	}); err != nil {
		return OpenResponse{}, err
	}
	if err := h.store.CreateSession(ctx, sess); err != nil {
		return OpenResponse{}, err
	}
	hs := &hostSession{s: sess, key: key, perm: perm, gperm: gperm, elems: el.IDs, rows: el.Rows, dst: psi.DST([]byte(id)), served: map[int]bool{}, lastSeen: now}
	h.mu.Lock()
	h.live[id] = hs
	h.mu.Unlock()
	h.log.Info("psi session opened", "job", job.ID, "peer", party, "guest_count", n, "host_count", m, "mode", r.Mode)
	return OpenResponse{Session: id, HostCount: m, TagLen: sess.TagLen, BatchSize: bs}, nil
}

// modeMismatch explains why a host job of mode host refuses a guest asking
// for mode guest.
func modeMismatch(host, guest Mode) error {
	switch {
	case host == ModeCardinality:
		return fmt.Errorf("%w: the host's job allows the guest to learn only the cardinality (the guest asked for mode %s)", ErrMismatch, guest)
	case host == ModeBoth:
		return fmt.Errorf("%w: the host's job is in mode both, where the host learns the intersection too; the guest asked for mode %s", ErrMismatch, guest)
	case guest == ModeBoth:
		return fmt.Errorf("%w: the guest asked for mode both (it reveals the intersection to the host); the host's job is in mode %s", ErrMismatch, host)
	}
	return fmt.Errorf("%w: the host's job is in mode %s, the guest asked for mode %s", ErrMismatch, host, guest)
}

func describeNorm(n psi.Normalization) string {
	return fmt.Sprintf("trim=%t case_fold=%t phone=%q", n.Trim, n.CaseFold, n.Phone)
}

func sessionAAD(id, what string) []byte { return []byte("psi-host-" + what + "|" + id) }

// pickJob finds the pending host job a handshake runs on.
func (h *Sessions) pickJob(ctx context.Context, party string, r OpenRequest, preferred string) (Job, error) {
	fits := func(j Job) bool {
		return j.Role == RoleHost && j.Peer.Party == party && j.Status == StatusPending && (j.Purpose == "" || j.Purpose == r.Purpose)
	}
	if preferred != "" {
		j, err := h.store.GetJob(ctx, preferred)
		if err == nil && fits(j) {
			return j, nil
		}
		if r.HostJob != "" {
			return Job{}, fmt.Errorf("%w: job %s is not a pending job for party %s", ErrNoHostJob, r.HostJob, party)
		}
	}
	jobs, err := h.store.ListJobs(ctx, JobFilter{Role: RoleHost, Status: []Status{StatusPending}, Limit: 1000})
	if err != nil {
		return Job{}, err
	}
	// Oldest first, preferring a job of a mode that serves the guest; a job
	// of another mode is returned only to be refused with the reason.
	other := -1
	for i := len(jobs) - 1; i >= 0; i-- {
		if !fits(jobs[i]) {
			continue
		}
		if jobs[i].Mode.serves(r.Mode) {
			return jobs[i], nil
		}
		if other < 0 {
			other = i
		}
	}
	if other >= 0 {
		return jobs[other], nil
	}
	purpose := ""
	if r.Purpose != "" {
		purpose = " for purpose " + r.Purpose
	}
	return Job{}, fmt.Errorf("%w: no pending host job for party %s%s; the host's operator starts one with `fedrisk psi run --role host --peer %s ...`", ErrNoHostJob, party, purpose, party)
}

// resume answers a handshake that names an existing session.
func (h *Sessions) resume(ctx context.Context, party string, r OpenRequest) (OpenResponse, error) {
	hs, err := h.get(ctx, party, r.Session)
	if err != nil {
		return OpenResponse{}, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	s := hs.s
	if s.Mode != r.Mode || s.GuestCount != r.GuestCount || s.BatchSize > r.BatchSize || s.Fingerprint != r.Normalization {
		return OpenResponse{}, fmt.Errorf("%w: the handshake differs from the session's", ErrMismatch)
	}
	hs.lastSeen = h.opts.Now()
	return OpenResponse{Session: s.ID, HostCount: s.HostCount, TagLen: s.TagLen, BatchSize: s.BatchSize, Resumed: true}, nil
}

// get returns the open session id of party, restoring it from the store
// after a restart when its keys were kept.
func (h *Sessions) get(ctx context.Context, party, id string) (*hostSession, error) {
	if !ValidSessionID(id) {
		return nil, ErrSessionNotFound
	}
	h.mu.Lock()
	hs := h.live[id]
	h.mu.Unlock()
	if hs == nil {
		var err error
		if hs, err = h.restore(ctx, party, id); err != nil {
			return nil, err
		}
	}
	if hs.s.Peer != party {
		return nil, ErrSessionNotFound // another party's session: as if unknown
	}
	hs.mu.Lock()
	closed := hs.closed
	hs.mu.Unlock()
	if closed != nil {
		return nil, closed
	}
	return hs, nil
}

func (h *Sessions) restore(ctx context.Context, party, id string) (*hostSession, error) {
	s, err := h.store.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.Peer != party {
		return nil, ErrSessionNotFound
	}
	switch s.Status {
	case SessionOpen:
	case SessionExpired:
		return nil, fmt.Errorf("%w: the session expired (%s)", ErrSessionNotFound, s.Reason)
	default:
		return nil, &ClosedError{Code: s.Code, Reason: s.Reason}
	}
	fail := func(reason string) (*hostSession, error) {
		h.close(ctx, id, SessionExpired, SessionCodeExpired, reason, StatusPending)
		return nil, fmt.Errorf("%w: %s", ErrSessionNotFound, reason)
	}
	if h.codec == nil || s.KeyEnc == nil {
		return fail("the host restarted and does not keep session keys")
	}
	raw, err := h.sealer.Decrypt(ctx, s.KeyID, s.KeyEnc, sessionAAD(id, "key"))
	if err != nil {
		return fail("the session key cannot be read")
	}
	key, err := h.codec.Unmarshal(raw)
	clear(raw)
	if err != nil {
		return fail("the session key cannot be read")
	}
	permRaw, err := h.sealer.Decrypt(ctx, s.KeyID, s.PermEnc, sessionAAD(id, "perm"))
	if err != nil {
		return fail("the session permutation cannot be read")
	}
	perms, err := decodePerms(permRaw, 2)
	if err != nil || len(perms[0]) != s.HostCount {
		return fail("the session permutation is corrupt")
	}
	job, err := h.store.GetJob(ctx, s.JobID)
	if err != nil {
		return nil, err
	}
	el, err := LoadElements(ctx, h.inputs, job.Input, job.Normalization, nil)
	if err != nil || !bytes.Equal(el.Digest, s.InputDigest) {
		h.close(ctx, id, SessionAborted, SessionCodeAborted, "the host's input changed during the session", StatusFailed)
		return nil, &ClosedError{Code: SessionCodeAborted, Reason: "the host's input changed during the session"}
	}
	hs := &hostSession{s: s, key: key, perm: perms[0], elems: el.IDs, rows: el.Rows, dst: psi.DST([]byte(id)), served: map[int]bool{}, lastSeen: h.opts.Now()}
	if s.Mode == ModeCardinality {
		hs.gperm = perms[1]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if other := h.live[id]; other != nil {
		return other, nil
	}
	h.live[id] = hs
	h.log.Info("psi session restored", "session_job", s.JobID, "peer", party)
	return hs, nil
}

// GuestBatch answers one batch of the guest's blinded points with their
// tags (nil in cardinality mode, where the host keeps them).
func (h *Sessions) GuestBatch(ctx context.Context, party, id string, batch int, points []byte) ([]byte, error) {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		return nil, err
	}
	s := hs.s
	k := BatchLen(s.GuestCount, s.BatchSize, batch)
	if k < 0 {
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: guest batch %d does not exist (%d elements in batches of %d)", ErrProtocol, batch, s.GuestCount, s.BatchSize))
	}
	if len(points) != k*PointBytes {
		e := ErrProtocol
		if len(points) > k*PointBytes {
			e = ErrBatchTooLarge
		}
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: guest batch %d has %d bytes, expected %d points of %d bytes", e, batch, len(points), k, PointBytes))
	}
	var tags []byte
	err = hs.withKey(func(k *psi.Key) (err error) {
		tags, err = reblind(k, points, s.TagLen)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			return nil, h.abort(ctx, hs, fmt.Errorf("%w (guest batch %d)", err, batch))
		}
		return nil, err
	}
	digest := sha256.Sum256(points)
	rec := SessionBatch{Session: id, Batch: batch, Digest: digest[:]}
	if s.Mode == ModeCardinality {
		rec.Tags = tags
	}
	stored, existed, err := h.store.RecordBatch(ctx, rec)
	if err != nil {
		return nil, err
	}
	if existed && !bytes.Equal(stored.Digest, digest[:]) {
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: guest batch %d was sent again with different content", ErrProtocol, batch))
	}
	h.metrics.traffic(RoleHost, "received", k, len(points))
	if !existed {
		h.progress(ctx, hs, k)
	}
	hs.touch(h.opts.Now())
	if s.Mode == ModeCardinality {
		return nil, nil
	}
	h.metrics.traffic(RoleHost, "sent", k, len(tags))
	return tags, nil
}

// ShuffledTags serves one batch of the guest's tags in shuffled order
// (cardinality mode), once every guest batch has arrived.
func (h *Sessions) ShuffledTags(ctx context.Context, party, id string, batch int) ([]byte, error) {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		return nil, err
	}
	s := hs.s
	if s.Mode != ModeCardinality {
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: shuffled tags exist only in cardinality mode", ErrProtocol))
	}
	k := BatchLen(s.GuestCount, s.BatchSize, batch)
	if k < 0 {
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: shuffled batch %d does not exist", ErrProtocol, batch))
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.shuffled == nil {
		batches, err := h.store.SessionBatches(ctx, id)
		if err != nil {
			return nil, err
		}
		want := batchCount(s.GuestCount, s.BatchSize)
		if len(batches) != want {
			return nil, fmt.Errorf("%w: %d of %d guest batches arrived", ErrNotReady, len(batches), want)
		}
		all := make([]byte, 0, s.GuestCount*s.TagLen)
		for i, b := range batches {
			if b.Batch != i || len(b.Tags) != BatchLen(s.GuestCount, s.BatchSize, i)*s.TagLen {
				return nil, fmt.Errorf("stored tags of batch %d are corrupt", i)
			}
			all = append(all, b.Tags...)
		}
		shuffled := make([]byte, len(all))
		for j, src := range hs.gperm {
			copy(shuffled[j*s.TagLen:(j+1)*s.TagLen], all[src*s.TagLen:(src+1)*s.TagLen])
		}
		hs.shuffled = shuffled
	}
	lo, hi := batchRange(s.GuestCount, s.BatchSize, batch)
	out := bytes.Clone(hs.shuffled[lo*s.TagLen : hi*s.TagLen])
	first := !hs.served[-1-batch]
	hs.served[-1-batch] = true
	hs.lastSeen = h.opts.Now()
	h.metrics.traffic(RoleHost, "sent", k, len(out))
	if first {
		h.progress(ctx, hs, k)
	}
	return out, nil
}

// HostBatch serves one batch of the host's blinded points, in the
// session's shuffled order, computed when asked for.
func (h *Sessions) HostBatch(ctx context.Context, party, id string, batch int) ([]byte, error) {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		return nil, err
	}
	s := hs.s
	k := BatchLen(s.HostCount, s.BatchSize, batch)
	if k < 0 {
		return nil, h.abort(ctx, hs, fmt.Errorf("%w: host batch %d does not exist (%d elements in batches of %d)", ErrProtocol, batch, s.HostCount, s.BatchSize))
	}
	lo, hi := batchRange(s.HostCount, s.BatchSize, batch)
	ids := make([]string, 0, hi-lo)
	for _, e := range hs.perm[lo:hi] {
		ids = append(ids, hs.elems[e])
	}
	var points []byte
	if err := hs.withKey(func(k *psi.Key) (err error) {
		points, err = hashAndBlind(k, hs.dst, ids)
		return err
	}); err != nil {
		return nil, err
	}
	hs.mu.Lock()
	first := !hs.served[batch]
	hs.served[batch] = true
	hs.mu.Unlock()
	hs.touch(h.opts.Now())
	h.metrics.traffic(RoleHost, "sent", k, len(points))
	if first {
		h.progress(ctx, hs, k)
	}
	return points, nil
}

// Reveal records one batch of the host positions the guest matched
// (both-learn mode): 1..BatchSize positions of the host's shuffled order,
// strictly ascending. A replay with the same positions is accepted again;
// a batch that does not exist, a position outside the host's set, or a
// replay with other positions aborts the session.
func (h *Sessions) Reveal(ctx context.Context, party, id string, batch int, positions []int) error {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		return err
	}
	s := hs.s
	if s.Mode != ModeBoth {
		return h.abort(ctx, hs, fmt.Errorf("%w: reveals exist only in both-learn mode (the session is in mode %s)", ErrProtocol, s.Mode))
	}
	if BatchLen(s.HostCount, s.BatchSize, batch) < 0 {
		return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d does not exist (the host has %d elements in batches of %d)", ErrProtocol, batch, s.HostCount, s.BatchSize))
	}
	switch {
	case len(positions) == 0:
		return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d is empty", ErrProtocol, batch))
	case len(positions) > s.BatchSize:
		return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d has %d positions, at most %d", ErrBatchTooLarge, batch, len(positions), s.BatchSize))
	}
	for i, p := range positions {
		if p < 0 || p >= s.HostCount {
			return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d: position %d is outside the host's %d elements", ErrProtocol, batch, p, s.HostCount))
		}
		if i > 0 && p <= positions[i-1] {
			return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d: positions are not strictly ascending", ErrProtocol, batch))
		}
	}
	stored, existed, err := h.store.RecordReveal(ctx, SessionReveal{Session: id, Batch: batch, Positions: positions})
	if err != nil {
		return err
	}
	if existed && !slices.Equal(stored.Positions, positions) {
		return h.abort(ctx, hs, fmt.Errorf("%w: reveal batch %d was sent again with other positions", ErrProtocol, batch))
	}
	h.metrics.traffic(RoleHost, "received", len(positions), len(positions)*PositionBytes)
	hs.touch(h.opts.Now())
	return nil
}

// Finish ends a session the guest completed. In both-learn mode the host
// first checks the guest's reveal summary against the reveal batches it
// received and stores its own result.
func (h *Sessions) Finish(ctx context.Context, party, id string, f FinishRequest) error {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		var ce *ClosedError
		if errors.As(err, &ce) && ce.Code == SessionCodeDone {
			return nil // a retried Finish
		}
		return err
	}
	if hs.s.Mode == ModeBoth {
		if err := h.learn(ctx, hs, f); err != nil {
			if errors.Is(err, ErrProtocol) {
				return h.abort(ctx, hs, err)
			}
			return err
		}
	} else if f.RevealBatches != 0 || f.Revealed != 0 {
		return h.abort(ctx, hs, fmt.Errorf("%w: the guest announced reveals outside both-learn mode", ErrProtocol))
	}
	h.close(ctx, id, SessionDone, SessionCodeDone, "finished", StatusDone)
	j, err := h.store.GetJob(ctx, hs.s.JobID)
	if err == nil && j.Status == StatusDone {
		h.metrics.finished(RoleHost, j.FinishedAt.Sub(j.StartedAt))
	}
	h.log.Info("psi session finished", "job", hs.s.JobID, "peer", party)
	return nil
}

// learn computes and stores the host's result of a both-learn session: the
// revealed positions mapped through the permutation to the host's rows,
// with the identifiers encrypted under the host job's data key, as the
// guest stores its result. Errors wrapping ErrProtocol are the guest's.
func (h *Sessions) learn(ctx context.Context, hs *hostSession, f FinishRequest) error {
	hs.learnMu.Lock()
	defer hs.learnMu.Unlock()
	s := hs.s
	if f.RevealBatches < 0 || f.Revealed < 0 || f.Revealed > min(s.GuestCount, s.HostCount) {
		return fmt.Errorf("%w: the guest announced %d revealed positions; the sets have %d and %d elements", ErrProtocol, f.Revealed, s.GuestCount, s.HostCount)
	}
	reveals, err := h.store.SessionReveals(ctx, s.ID)
	if err != nil {
		return err
	}
	if len(reveals) != f.RevealBatches {
		return fmt.Errorf("%w: the guest announced %d reveal batches, %d arrived", ErrProtocol, f.RevealBatches, len(reveals))
	}
	elems := make([]int, 0, f.Revealed)
	last := -1
	for i, rv := range reveals {
		if rv.Batch != i {
			return fmt.Errorf("%w: reveal batch %d is missing", ErrProtocol, i)
		}
		for _, p := range rv.Positions {
			if p <= last || p >= len(hs.perm) {
				return fmt.Errorf("%w: reveal batch %d repeats a position or is out of order", ErrProtocol, i)
			}
			last = p
			elems = append(elems, hs.perm[p])
		}
	}
	if len(elems) != f.Revealed {
		return fmt.Errorf("%w: the guest announced %d revealed positions, %d arrived", ErrProtocol, f.Revealed, len(elems))
	}
	// Elements are in input order (first occurrences), so sorting them
	// sorts the rows.
	slices.Sort(elems)

	j, err := h.store.GetJob(ctx, s.JobID)
	if err != nil {
		return fmt.Errorf("store the host's result: %w", err)
	}
	if j.Status != StatusRunning || j.Session != s.ID {
		return &ClosedError{Code: SessionCodeAborted, Reason: fmt.Sprintf("the host's job is %s", j.Status)}
	}
	if j.KeyID == "" {
		// Made outside the job's transaction: the key store may share
		// the database.
		keyID, err := h.sealer.NewDataKey(ctx)
		if err != nil {
			return fmt.Errorf("store the host's result: %w", err)
		}
		if j, err = h.store.UpdateJob(ctx, s.JobID, func(j *Job) error {
			if j.KeyID == "" {
				j.KeyID = keyID
			}
			return nil
		}); err != nil || j.KeyID != keyID {
			_ = h.sealer.DestroyDataKey(context.WithoutCancel(ctx), keyID)
		}
		if err != nil {
			return fmt.Errorf("store the host's result: %w", err)
		}
	}
	keyID := j.KeyID
	var chunks []ResultChunk
	per := h.opts.ResultChunk
	for c := 0; c*per < len(elems); c++ {
		part := elems[c*per : min((c+1)*per, len(elems))]
		rows := make([]int, len(part))
		var ids []byte
		for i, e := range part {
			rows[i] = hs.rows[e]
			ids = appendString(ids, hs.elems[e])
		}
		enc, err := h.sealer.Encrypt(ctx, keyID, ids, resultAAD(j.ID, c))
		clear(ids)
		if err != nil {
			return fmt.Errorf("store the host's result: %w", err)
		}
		chunks = append(chunks, ResultChunk{JobID: j.ID, Chunk: c, Rows: encodeInts(rows), IDsEnc: enc})
	}
	if err := h.store.SaveResult(ctx, j.ID, chunks); err != nil {
		return fmt.Errorf("store the host's result: %w", err)
	}
	size := int64(len(elems))
	if _, err := h.store.UpdateJob(ctx, j.ID, func(j *Job) error {
		j.IntersectionSize = &size
		return nil
	}); err != nil {
		return fmt.Errorf("store the host's result: %w", err)
	}
	h.log.Info("psi host learned the intersection", "job", j.ID, "peer", s.Peer, "intersection", size)
	return nil
}

// Cancel ends a session at the guest's request.
func (h *Sessions) Cancel(ctx context.Context, party, id, code, reason string) error {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		var ce *ClosedError
		if errors.As(err, &ce) {
			return nil // already over
		}
		return err
	}
	reason = clip(reason, 500)
	if code == CodeCancelled {
		h.close(ctx, id, SessionAborted, SessionCodeCancelled, "cancelled by the guest: "+reason, StatusCancelled)
	} else {
		h.close(ctx, id, SessionAborted, SessionCodeAborted, "aborted by the guest: "+reason, StatusFailed)
	}
	h.log.Info("psi session ended by the guest", "job", hs.s.JobID, "peer", party, "code", code)
	return nil
}

// CancelJob ends the open session of host job jobID (its operator
// cancelled it); the guest learns it at its next message.
func (h *Sessions) CancelJob(ctx context.Context, j Job) {
	if j.Session == "" {
		return
	}
	h.close(ctx, j.Session, SessionAborted, SessionCodeCancelled, "cancelled by the host's operator", StatusCancelled)
}

// Abort ends session id of party because of a protocol error the
// transport found (an oversized or malformed body) and returns cause.
func (h *Sessions) Abort(ctx context.Context, party, id string, cause error) error {
	hs, err := h.get(ctx, party, id)
	if err != nil {
		return err
	}
	return h.abort(ctx, hs, cause)
}

// abort ends a session because of a protocol error and returns err for
// the message that caused it.
func (h *Sessions) abort(ctx context.Context, hs *hostSession, err error) error {
	code := SessionCodeAborted
	h.log.Warn("psi session aborted", "job", hs.s.JobID, "peer", hs.s.Peer, "reason", err.Error())
	h.close(ctx, hs.s.ID, SessionAborted, code, err.Error(), StatusFailed)
	return err
}

// close ends session id with status and reason, and moves its host job to
// jobStatus (pending: the job waits for a new session).
func (h *Sessions) close(ctx context.Context, id string, status SessionStatus, code, reason string, jobStatus Status) {
	ctx = context.WithoutCancel(ctx)
	now := h.opts.Now()
	h.mu.Lock()
	hs := h.live[id]
	delete(h.live, id)
	h.mu.Unlock()
	if hs != nil {
		hs.mu.Lock()
		hs.closed = &ClosedError{Code: code, Reason: reason}
		hs.mu.Unlock()
		hs.keyMu.Lock()
		if hs.key != nil {
			hs.key.Destroy()
			hs.key = nil
		}
		hs.keyMu.Unlock()
	}
	var jobID, keyID string
	_, err := h.store.UpdateSession(ctx, id, func(s *Session) error {
		if s.Status != SessionOpen {
			return errNoChange
		}
		s.Status, s.Code, s.Reason, s.FinishedAt, s.LastSeen = status, code, reason, now, now
		s.KeyEnc, s.PermEnc = nil, nil
		jobID, keyID = s.JobID, s.KeyID
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNoChange) {
			h.log.Warn("close psi session", "err", err)
		}
		return
	}
	if keyID != "" {
		if err := h.sealer.DestroyDataKey(ctx, keyID); err != nil {
			h.log.Warn("destroy session key", "err", err)
		}
	}
	if err := h.store.DeleteSessionBatches(ctx, id); err != nil {
		h.log.Warn("delete session batches", "err", err)
	}
	_, err = h.store.UpdateJob(ctx, jobID, func(j *Job) error {
		if j.Status.Final() || j.Session != id {
			return errNoChange
		}
		j.Status, j.UpdatedAt, j.Rate = jobStatus, now, 0
		switch jobStatus {
		case StatusPending:
			j.Session, j.Error, j.DoneItems = "", "previous session: "+reason, 0
		case StatusDone:
			j.FinishedAt, j.DoneItems = now, j.TotalItems
		default:
			j.FinishedAt, j.Error = now, reason
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		h.log.Warn("update host job", "err", err)
	}
}

func (h *Sessions) failJob(ctx context.Context, jobID, reason string) {
	now := h.opts.Now()
	_, err := h.store.UpdateJob(context.WithoutCancel(ctx), jobID, func(j *Job) error {
		if j.Status.Final() {
			return errNoChange
		}
		j.Status, j.Error, j.FinishedAt, j.UpdatedAt = StatusFailed, reason, now, now
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		h.log.Warn("fail host job", "err", err)
	}
}

// progress adds k items to the host job of hs.
func (h *Sessions) progress(ctx context.Context, hs *hostSession, k int) {
	now := h.opts.Now()
	_, err := h.store.UpdateJob(ctx, hs.s.JobID, func(j *Job) error {
		if j.Status != StatusRunning || j.Session != hs.s.ID {
			return errNoChange
		}
		j.DoneItems = min(j.DoneItems+int64(k), j.TotalItems)
		if el := now.Sub(j.StartedAt).Seconds(); el > 0 {
			j.Rate = float64(j.DoneItems) / el
		}
		j.UpdatedAt = now
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		h.log.Warn("host job progress", "err", err)
	}
	if _, err := h.store.UpdateSession(ctx, hs.s.ID, func(s *Session) error {
		if s.Status != SessionOpen {
			return errNoChange
		}
		s.LastSeen = now
		return nil
	}); err != nil && !errors.Is(err, errNoChange) {
		h.log.Warn("session last seen", "err", err)
	}
}

// withKey runs fn with the session key, unless the session closed.
func (hs *hostSession) withKey(fn func(k *psi.Key) error) error {
	hs.keyMu.RLock()
	defer hs.keyMu.RUnlock()
	if hs.key == nil {
		hs.mu.Lock()
		closed := hs.closed
		hs.mu.Unlock()
		if closed != nil {
			return closed
		}
		return ErrSessionNotFound
	}
	return fn(hs.key)
}

func (hs *hostSession) touch(now time.Time) {
	hs.mu.Lock()
	hs.lastSeen = now
	hs.mu.Unlock()
}

// Expire ends the sessions silent for longer than IdleTimeout; their host
// jobs wait for a new session.
func (h *Sessions) Expire(ctx context.Context) {
	now := h.opts.Now()
	cutoff := now.Add(-h.opts.IdleTimeout)
	reason := fmt.Sprintf("no message from the guest for %s", h.opts.IdleTimeout)
	h.mu.Lock()
	var idle []string
	for id, hs := range h.live {
		hs.mu.Lock()
		if hs.lastSeen.Before(cutoff) {
			idle = append(idle, id)
		}
		hs.mu.Unlock()
	}
	h.mu.Unlock()
	for _, id := range idle {
		h.close(ctx, id, SessionExpired, SessionCodeExpired, reason, StatusPending)
	}
	// Sessions of an earlier run of this node (or another replica that
	// died) that nobody touched.
	stale, err := h.store.IdleSessions(ctx, cutoff)
	if err != nil {
		h.log.Warn("list idle sessions", "err", err)
		return
	}
	for _, s := range stale {
		h.mu.Lock()
		_, live := h.live[s.ID]
		h.mu.Unlock()
		if !live {
			h.close(ctx, s.ID, SessionExpired, SessionCodeExpired, reason, StatusPending)
		}
	}
}

// RunExpiry calls Expire until ctx ends.
func (h *Sessions) RunExpiry(ctx context.Context) {
	every := min(max(h.opts.IdleTimeout/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Expire(ctx)
		}
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
