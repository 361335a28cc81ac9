package psijob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Service is the job API of one node: it creates, lists and cancels jobs,
// reads results, and schedules the guest jobs on a Runner (resuming those
// that were running when the node stopped).
type Service struct {
	store    Store
	inputs   Inputs
	runner   *Runner
	sessions *Sessions
	sealer   Sealer
	cache    ResultCache
	peers    map[string]string // registered peer party → URL
	role     Role              // the node's default role
	consent  bool              // a consent filter is available
	opts     Options
	log      *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
	stop    context.CancelFunc
	wake    chan struct{}
}

// ServiceDeps is what a Service needs.
type ServiceDeps struct {
	Store    Store
	Inputs   Inputs
	Runner   *Runner
	Sessions *Sessions
	Sealer   Sealer
	Cache    ResultCache
	// Peers maps every registered peer party to its base URL.
	Peers map[string]string
	// Role is the node's role, the default of new jobs.
	Role Role
	// Consent tells whether jobs with a purpose can be filtered by consent.
	Consent bool
}

// NewService returns the job service; Start runs its scheduler.
func NewService(d ServiceDeps, opts Options) *Service {
	opts = opts.withDefaults()
	if d.Role == "" {
		d.Role = RoleGuest
	}
	return &Service{store: d.Store, inputs: d.Inputs, runner: d.Runner, sessions: d.Sessions, sealer: d.Sealer, cache: d.Cache,
		peers: d.Peers, role: d.Role, consent: d.Consent, opts: opts, log: opts.Log.With("component", "psi-jobs"),
		running: map[string]context.CancelFunc{}, wake: make(chan struct{}, 1)}
}

// CreateRequest asks for a new job.
type CreateRequest struct {
	Role          Role   // empty: the node's role
	Peer          string // a registered peer party
	PeerJob       string // guest: the host's job id (optional)
	Input         Input
	Purpose       string
	Mode          Mode // empty: intersection
	Normalization psi.Normalization
	BatchSize     int // 0: the node's default
	Actor         string
}

// Create validates and stores a job; a guest job starts at once.
func (s *Service) Create(ctx context.Context, r CreateRequest) (Job, error) {
	if r.Role == "" {
		r.Role = s.role
	}
	if r.Mode == "" {
		r.Mode = ModeIntersection
	}
	if r.BatchSize == 0 {
		r.BatchSize = s.opts.BatchSize
	}
	switch {
	case r.Role != RoleGuest && r.Role != RoleHost:
		return Job{}, invalid("role", "must be guest or host")
	case strings.Contains(r.Peer, "://"):
		// A peer named by its URL: the registered peer at that address.
		name, ok := s.peerAt(r.Peer)
		if !ok {
			return Job{}, invalid("peer", "no registered peer has the URL %q (see the peers setting)", r.Peer)
		}
		r.Peer = name
		return s.Create(ctx, r)
	case r.Peer == "" || !partyPattern.MatchString(r.Peer):
		return Job{}, invalid("peer", "must be a party name (lowercase letters, digits and '-')")
	case !r.Mode.Valid():
		return Job{}, invalid("mode", "must be intersection, cardinality or both")
	case r.Purpose != "" && !purposePattern.MatchString(r.Purpose):
		return Job{}, invalid("purpose", "must be a purpose id (lowercase letters, digits and '_')")
	case r.BatchSize < 1 || r.BatchSize > MaxBatchSize:
		return Job{}, invalid("batch_size", "must be 1..%d", MaxBatchSize)
	case r.PeerJob != "" && (r.Role != RoleGuest || !ValidJobID(r.PeerJob)):
		return Job{}, invalid("peer_job", "must be the host's job id (psi_...), for guest jobs only")
	}
	url, ok := s.peers[r.Peer]
	if !ok {
		return Job{}, invalid("peer", "%q is not a registered peer of this node (see the peers setting)", r.Peer)
	}
	if r.Role == RoleGuest && r.Purpose != "" && !s.consent {
		return Job{}, fmt.Errorf("%w: a purpose filters the input by consent, and this node has no consent service in its database and no consent_service_url", ErrNoConsent)
	}
	if err := r.Normalization.Validate(); err != nil {
		return Job{}, invalid("normalization.phone", "must be a country calling code of 1-3 digits, e.g. 86")
	}
	if err := s.inputs.Check(ctx, r.Input); err != nil {
		return Job{}, err
	}
	id, err := newJobID()
	if err != nil {
		return Job{}, err
	}
	now := s.opts.Now()
	j := Job{ID: id, Role: r.Role, Peer: PeerRef{Party: r.Peer, URL: url}, PeerJob: r.PeerJob, Status: StatusPending, Mode: r.Mode,
		Purpose: r.Purpose, Input: r.Input, Normalization: r.Normalization, BatchSize: r.BatchSize, CreatedBy: r.Actor,
		CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateJob(ctx, j); err != nil {
		return Job{}, fmt.Errorf("create psi job: %w", err)
	}
	s.log.Info("psi job created", "job", id, "role", j.Role, "peer", j.Peer.Party, "mode", j.Mode, "input", j.Input.Kind, "actor", r.Actor)
	if j.Role == RoleGuest {
		s.kick()
	}
	return j, nil
}

// Get returns a job.
func (s *Service) Get(ctx context.Context, id string) (Job, error) {
	if !ValidJobID(id) {
		return Job{}, ErrNotFound
	}
	return s.store.GetJob(ctx, id)
}

// List returns jobs, newest first.
func (s *Service) List(ctx context.Context, f JobFilter) ([]Job, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	return s.store.ListJobs(ctx, f)
}

// Cancel cancels a job; a running one stops and its peer is told.
func (s *Service) Cancel(ctx context.Context, id, actor string) (Job, error) {
	if !ValidJobID(id) {
		return Job{}, ErrNotFound
	}
	now := s.opts.Now()
	j, err := s.store.UpdateJob(ctx, id, func(j *Job) error {
		if j.Status.Final() {
			return fmt.Errorf("%w: it is %s", ErrFinal, j.Status)
		}
		j.Status, j.Error, j.FinishedAt, j.UpdatedAt, j.Rate = StatusCancelled, "cancelled by "+actor, now, now, 0
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("cancel psi job: %w", err)
	}
	s.log.Info("psi job cancelled", "job", id, "actor", actor)
	if j.Role == RoleHost {
		if s.sessions != nil {
			s.sessions.CancelJob(ctx, j)
		}
		return j, nil
	}
	s.mu.Lock()
	stop := s.running[id]
	s.mu.Unlock()
	if stop != nil {
		stop() // the runner tells the host
	} else if j.Session != "" && s.runner != nil {
		// Not running here: tell the host directly.
		if p, err := s.runner.peers(j); err == nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CallTimeout)
			if err := p.Cancel(cctx, j.Session, CodeCancelled, "cancelled by the guest's operator"); err != nil {
				s.log.Warn("could not tell the host the job was cancelled", "job", id, "err", err)
			}
			cancel()
		}
		if j.KeyID != "" {
			_ = s.sealer.DestroyDataKey(context.WithoutCancel(ctx), j.KeyID)
		}
		_ = s.store.DeleteCheckpoints(context.WithoutCancel(ctx), id)
	}
	return j, nil
}

// ResultRow is one row of an intersection: the row of the job's input (the
// guest's, or the host's in both-learn mode) and its normalised identifier.
type ResultRow struct {
	Row int
	ID  string
}

// Rows returns the row indices of a finished job with rows (a guest's
// intersection or both-learn job, a host's both-learn job), from the cache
// when it holds them.
func (s *Service) Rows(ctx context.Context, id string) ([]int, error) {
	j, err := s.resultJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.cache != nil {
		if b, ok, err := s.cache.Get(ctx, cacheKey(id)); err == nil && ok {
			if rows, err := decodeInts(b, MaxSetSize); err == nil {
				return rows, nil
			}
		}
	}
	var rows []int
	err = s.store.ResultChunks(ctx, j.ID, func(c ResultChunk) error {
		v, err := decodeInts(c.Rows, MaxSetSize)
		rows = append(rows, v...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.cache != nil {
		if err := s.cache.Set(ctx, cacheKey(id), encodeInts(rows)); err != nil {
			s.log.Warn("cache psi result", "err", err)
		}
	}
	return rows, nil
}

// Export calls fn with every row of a finished job with rows (see Rows), in
// input order, decrypting the identifiers chunk by chunk.
func (s *Service) Export(ctx context.Context, id string, fn func(ResultRow) error) error {
	j, err := s.resultJob(ctx, id)
	if err != nil {
		return err
	}
	return s.store.ResultChunks(ctx, j.ID, func(c ResultChunk) error {
		rows, err := decodeInts(c.Rows, MaxSetSize)
		if err != nil {
			return err
		}
		raw, err := s.sealer.Decrypt(ctx, j.KeyID, c.IDsEnc, resultAAD(j.ID, c.Chunk))
		if err != nil {
			return fmt.Errorf("decrypt result: %w", err)
		}
		ids, err := readStrings(raw)
		clear(raw)
		if err != nil || len(ids) != len(rows) {
			return fmt.Errorf("result chunk %d is corrupt", c.Chunk)
		}
		for i := range rows {
			if err := fn(ResultRow{Row: rows[i], ID: ids[i]}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) resultJob(ctx context.Context, id string) (Job, error) {
	j, err := s.Get(ctx, id)
	if err != nil {
		return Job{}, err
	}
	switch {
	case j.Role == RoleHost && j.Mode != ModeBoth:
		return Job{}, fmt.Errorf("%w: the host learns the intersection only in mode both", ErrNoRows)
	case j.Status != StatusDone:
		return Job{}, fmt.Errorf("%w: it is %s", ErrNotDone, j.Status)
	case j.Mode == ModeCardinality:
		return Job{}, ErrNoRows
	}
	return j, nil
}

// Start runs the scheduler until Stop: it runs pending guest jobs and
// resumes running ones whose lease expired (from a stopped node).
func (s *Service) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.stop = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.PollEvery)
		defer t.Stop()
		for {
			s.schedule(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-s.wake:
			}
		}
	}()
}

func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) schedule(ctx context.Context) {
	if s.runner == nil {
		return
	}
	jobs, err := s.store.ListJobs(ctx, JobFilter{Role: RoleGuest, Status: []Status{StatusPending, StatusRunning}, Limit: 1000})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list psi jobs to run", "err", err)
		}
		return
	}
	now := s.opts.Now()
	for i := len(jobs) - 1; i >= 0; i-- { // oldest first
		j := jobs[i]
		if j.Status == StatusRunning && now.Before(j.LeaseUntil) && j.Owner != s.runner.owner {
			continue // another runner holds it
		}
		s.mu.Lock()
		if s.stopped || len(s.running) >= s.opts.MaxJobs {
			s.mu.Unlock()
			return
		}
		if _, ok := s.running[j.ID]; ok {
			s.mu.Unlock()
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		s.running[j.ID] = cancel
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				cancel()
				s.mu.Lock()
				delete(s.running, j.ID)
				s.mu.Unlock()
				s.kick()
			}()
			_, err := s.runner.Run(rctx, j.ID)
			switch {
			case err == nil, errors.Is(err, ErrNotClaimable), errors.Is(err, ErrStopped):
			case errors.Is(err, ErrInterrupted):
				s.log.Info("psi job interrupted; it resumes at the next start", "job", j.ID)
			default:
				s.log.Warn("psi job run", "job", j.ID, "err", err)
			}
		}()
	}
}

// Stop ends the scheduler's runs (they resume from their checkpoints at the
// next start) and waits for them.
func (s *Service) Stop() {
	s.mu.Lock()
	s.stopped = true
	if s.stop != nil {
		s.stop()
	}
	for _, cancel := range s.running {
		cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// peerAt finds the registered peer whose URL is u (trailing slashes aside).
func (s *Service) peerAt(u string) (string, bool) {
	u = strings.TrimRight(u, "/")
	for name, url := range s.peers {
		if strings.TrimRight(url, "/") == u {
			return name, true
		}
	}
	return "", false
}
