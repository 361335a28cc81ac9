package trainjob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Roles of a job.
const (
	RoleGuest = "guest"
	RoleHost  = "host"
)

// AlgoHeteroLR is the only algorithm: vertical logistic regression
// (internal/training/hetero).
const AlgoHeteroLR = "hetero-lr"

// DefaultModelID names the model of a job that names none.
const DefaultModelID = "credit-risk"

// Statuses of a job.
const (
	StatusWaiting   = "waiting" // a host job before its guest connects
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Errors of the job manager.
var (
	ErrInvalid  = errors.New("trainjob: invalid request")
	ErrNotFound = errors.New("trainjob: no such job")
	ErrFinal    = errors.New("trainjob: job already ended")
)

// Request creates a job.
type Request struct {
	Role    string // guest or host
	Algo    string // empty: hetero-lr
	Peer    string // the other party: its name, or its URL in the peers setting
	File    string // the party's CSV, relative to the input directory
	PSIJob  string // this party's PSI job (mode both) whose intersection aligns File; empty: File is aligned already
	ModelID string // guest only; empty: DefaultModelID
	// HostFile is the file the guest asks the host to read when its
	// session creates the host's job (guest only; empty: the host's PSI
	// job's input).
	HostFile string
	// Hyper-parameters (guest only); zero values mean lr.DefaultConfig's.
	Epochs       int
	BatchSize    int
	LearningRate float64
	L2           *float64
	Patience     *int
	ClassWeights string // balanced or none
	Actor        string
}

// EpochStat is one finished epoch, on the validation rows.
type EpochStat struct {
	Epoch   int     `json:"epoch"`
	Seconds float64 `json:"seconds"`
	Loss    float64 `json:"loss"`
	AUC     float64 `json:"auc"`
	KS      float64 `json:"ks"`
	Best    bool    `json:"best,omitempty"`
}

// Job is a training job.
type Job struct {
	ID       string
	Role     string
	Algo     string
	Peer     string
	PeerJob  string // the other party's training job (once a session named it)
	File     string
	PSIJob   string
	HostFile string
	ModelID  string
	Version  string
	Train    lr.Config // guest: the hyper-parameters
	Epochs   int
	Rows     int
	Features int
	Status   string
	// Error says why a job failed or was cancelled, or, on a running job,
	// why it is interrupted.
	Error     string
	CreatedBy string
	Created   time.Time
	Started   time.Time // the first epoch began (after the setup)
	Finished  time.Time
	Updated   time.Time
	// EpochStats are the finished epochs (guest only).
	EpochStats []EpochStat
	// Test is the kept model's test metrics (guest only).
	Test *lr.Metrics
	// ModelPath is the exported half, once written.
	ModelPath string
	// BytesSent and BytesReceived are the encoded protocol messages.
	BytesSent, BytesReceived int64
}

// Elapsed is the time since the job was created, or its run time.
func (j Job) Elapsed(now time.Time) time.Duration {
	if !j.Finished.IsZero() {
		now = j.Finished
	}
	return now.Sub(j.Created)
}

// ManagerOptions configure the job manager.
type ManagerOptions struct {
	Party    string // this node's party (the model card's host name on a host)
	InputDir string // job files are read below it
	ModelDir string // exported halves are written in it
	Dial     Dialer
	// Peers maps the configured peers to their URLs; Allowed, if set,
	// overrides the membership test.
	Peers   map[string]string
	Allowed func(string) bool
	// Store keeps the jobs and checkpoints (nil: in memory).
	Store Store
	// PSI reads this node's PSI results (nil: --psi-job is refused).
	PSI PSIResults
	// Models registers the halves of trained models (nil: the halves are
	// only written to ModelDir).
	Models  Registrar
	Metrics *Metrics // nil: a private registry
	Log     *slog.Logger
	Now     func() time.Time
	// ResumeAttempts bounds how often a guest re-opens a session the host
	// lost (a host restart) before the job fails (0: 5).
	ResumeAttempts int
}

// Manager runs training jobs and keeps them in its Store; guest jobs that
// were running when the node stopped resume from their last checkpoint
// (Resume).
type Manager struct {
	opts    ManagerOptions
	store   Store
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool

	mu   sync.Mutex
	live map[string]*run

	// accepting serialises the host's session opens, so two opens for one
	// host job (a guest's retry racing its first try) cannot both start a
	// run. Opens are rare; a run itself never takes it.
	accepting sync.Mutex
}

// run is the in-memory side of a job: a waiting host job's rows, or a
// running run.
type run struct {
	table      *dataset.Table // a waiting host job's rows
	cancel     context.CancelFunc
	done       chan struct{} // closed when the run ends; nil while waiting
	cancelled  bool          // by the operator
	superseded bool          // host: a resumed session replaces this run
	baseSent   int64
	baseRecv   int64
	sent, recv atomic.Int64
}

// NewManager returns a manager; call Resume to continue interrupted jobs.
func NewManager(opts ManagerOptions) *Manager {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Allowed == nil {
		peers := opts.Peers
		opts.Allowed = func(p string) bool { _, ok := peers[p]; return ok }
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = NewMetrics(nil) // a private registry cannot conflict
	}
	if opts.ResumeAttempts <= 0 {
		opts.ResumeAttempts = 5
	}
	store := opts.Store
	if store == nil {
		store = NewMemStore()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{opts: opts, store: store, ctx: ctx, cancel: cancel, live: map[string]*run{}}
}

var jobIDPattern = regexp.MustCompile(`^tj-[0-9a-f]{24}$`)

// Now is the manager's clock.
func (m *Manager) Now() time.Time { return m.opts.Now() }

// ValidJobID reports whether s has the shape of a training job id.
func ValidJobID(s string) bool { return jobIDPattern.MatchString(s) }

func newID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "tj-" + hex.EncodeToString(b[:]), nil
}

var modelIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (m *Manager) inputPath(file string) (string, error) {
	if m.opts.InputDir == "" {
		return "", fmt.Errorf("%w: this node has no input directory", ErrInvalid)
	}
	if file == "" || !filepath.IsLocal(file) {
		return "", fmt.Errorf("%w: file %.200q must be a relative path below the node's data directory", ErrInvalid, file)
	}
	return filepath.Join(m.opts.InputDir, file), nil
}

// peerName resolves a peer given by name or by its configured URL.
func (m *Manager) peerName(p string) (string, error) {
	if strings.Contains(p, "://") {
		u := strings.TrimRight(p, "/")
		for name, url := range m.opts.Peers {
			if strings.TrimRight(url, "/") == u {
				return name, nil
			}
		}
		return "", fmt.Errorf("%w: no configured peer has the URL %.200q (see the peers setting)", ErrInvalid, p)
	}
	if pki.CheckPartyName(p) != nil || !m.opts.Allowed(p) {
		return "", fmt.Errorf("%w: peer %.70q is not a configured peer", ErrInvalid, p)
	}
	return p, nil
}

// trainConfig resolves the request's hyper-parameters.
func (r Request) trainConfig() (lr.Config, error) {
	cfg := lr.DefaultConfig()
	if r.Epochs < 0 || r.Epochs > lr.MaxEpochs {
		return cfg, fmt.Errorf("%w: epochs must be in 1..%d", ErrInvalid, lr.MaxEpochs)
	}
	if r.Epochs > 0 {
		cfg.Epochs = r.Epochs
	}
	if r.BatchSize != 0 {
		cfg.BatchSize = r.BatchSize
	}
	if r.LearningRate != 0 {
		cfg.LearningRate = r.LearningRate
	}
	if r.L2 != nil {
		cfg.L2 = *r.L2
	}
	if r.Patience != nil {
		cfg.Patience = *r.Patience
	}
	switch r.ClassWeights {
	case "":
	case "balanced":
		cfg.ClassWeights = lr.ClassWeighting{Mode: lr.Balanced}
	case "none":
		cfg.ClassWeights = lr.ClassWeighting{Mode: lr.Unweighted}
	default:
		return cfg, fmt.Errorf("%w: class_weights must be balanced or none", ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return cfg, nil
}

// loadTable reads a job's file and, with a PSI job, aligns it to the
// intersection. For a guest it returns what the host needs to find its
// side of the PSI run.
func (m *Manager) loadTable(ctx context.Context, role, peer, file, psiJob string) (*dataset.Table, psiRef, error) {
	path, err := m.inputPath(file)
	if err != nil {
		return nil, psiRef{}, err
	}
	if psiJob == "" {
		table, err := dataset.ReadFile(path, role == RoleGuest)
		if err != nil {
			return nil, psiRef{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return table, psiRef{}, nil
	}
	j, ids, err := m.intersection(ctx, psiJob, role, peer)
	if err != nil {
		return nil, psiRef{}, err
	}
	table, err := dataset.ReadFile(path, role == RoleGuest)
	if err != nil {
		return nil, psiRef{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if table, err = align(table, j.Normalization, ids); err != nil {
		return nil, psiRef{}, err
	}
	return table, psiRef{HostJob: j.PeerJob, Session: j.Session}, nil
}

// Create validates r, loads the party's file and starts the job (a host
// job waits for its guest). Bad requests wrap ErrInvalid and change
// nothing.
func (m *Manager) Create(ctx context.Context, r Request) (Job, error) {
	if r.Role != RoleGuest && r.Role != RoleHost {
		return Job{}, fmt.Errorf("%w: role must be guest or host", ErrInvalid)
	}
	if r.Algo == "" {
		r.Algo = AlgoHeteroLR
	}
	if r.Algo != AlgoHeteroLR {
		return Job{}, fmt.Errorf("%w: algorithm %.40q is not supported: the only algorithm is %s", ErrInvalid, r.Algo, AlgoHeteroLR)
	}
	peer, err := m.peerName(r.Peer)
	if err != nil {
		return Job{}, err
	}
	if r.ModelID != "" && !modelIDPattern.MatchString(r.ModelID) {
		return Job{}, fmt.Errorf("%w: model_id must be 1-64 letters, digits, '.', '_' or '-'", ErrInvalid)
	}
	var cfg lr.Config
	if r.Role == RoleGuest {
		if m.opts.Dial == nil {
			return Job{}, fmt.Errorf("%w: this node cannot reach peers", ErrInvalid)
		}
		if cfg, err = r.trainConfig(); err != nil {
			return Job{}, err
		}
		if r.HostFile != "" && !filepath.IsLocal(r.HostFile) {
			return Job{}, fmt.Errorf("%w: host_file must be a relative path below the host's data directory", ErrInvalid)
		}
	} else if r.Epochs != 0 || r.BatchSize != 0 || r.LearningRate != 0 || r.L2 != nil || r.Patience != nil || r.ClassWeights != "" ||
		r.ModelID != "" || r.HostFile != "" {
		return Job{}, fmt.Errorf("%w: the model id, hyper-parameters and host_file are the guest's to choose", ErrInvalid)
	}
	table, ref, err := m.loadTable(ctx, r.Role, peer, r.File, r.PSIJob)
	if err != nil {
		return Job{}, err
	}
	id, err := newID()
	if err != nil {
		return Job{}, err
	}
	now := m.opts.Now()
	j := Job{ID: id, Role: r.Role, Algo: r.Algo, Peer: peer, File: r.File, PSIJob: r.PSIJob, HostFile: r.HostFile,
		Rows: table.Len(), Features: len(table.Features), Status: StatusWaiting, CreatedBy: r.Actor, Created: now, Updated: now}
	if r.Role == RoleGuest {
		j.Status, j.Train, j.Epochs = StatusRunning, cfg, cfg.Epochs
		j.ModelID = r.ModelID
		if j.ModelID == "" {
			j.ModelID = DefaultModelID
		}
		j.Version = "1"
		if m.opts.Models != nil {
			if j.Version, err = m.opts.Models.NextVersion(ctx, j.ModelID); err != nil {
				return Job{}, fmt.Errorf("reserve a version of model %s: %w", j.ModelID, err)
			}
		}
	}
	if err := m.store.CreateJob(ctx, j); err != nil {
		return Job{}, fmt.Errorf("create training job: %w", err)
	}
	if r.Role == RoleGuest {
		m.startGuest(j, table, ref, false)
	} else {
		m.mu.Lock()
		m.live[id] = &run{table: table}
		m.mu.Unlock()
	}
	return m.Get(ctx, id)
}

// Resume continues the guest jobs that were running when the node stopped,
// each from its last checkpoint.
func (m *Manager) Resume(ctx context.Context) error {
	jobs, err := m.store.ListJobs(ctx, Filter{Role: RoleGuest, Status: []string{StatusRunning}, Limit: 1000})
	if err != nil {
		return fmt.Errorf("list training jobs to resume: %w", err)
	}
	for _, j := range jobs {
		m.mu.Lock()
		_, busy := m.live[j.ID]
		m.mu.Unlock()
		if busy {
			continue
		}
		table, ref, err := m.loadTable(ctx, j.Role, j.Peer, j.File, j.PSIJob)
		if err != nil {
			m.opts.Log.Warn("training job cannot resume", "job", j.ID, "err", err)
			m.finalize(ctx, j.ID, RoleGuest, StatusFailed, "resume: "+clip(err.Error(), 400), nil)
			continue
		}
		m.opts.Log.Info("resuming training job", "job", j.ID)
		m.startGuest(j, table, ref, true)
	}
	return nil
}

// Get returns a job.
func (m *Manager) Get(ctx context.Context, id string) (Job, error) {
	if !ValidJobID(id) {
		return Job{}, ErrNotFound
	}
	j, err := m.store.GetJob(ctx, id)
	if err != nil {
		return Job{}, err
	}
	return m.overlay(j), nil
}

// overlay adds the live byte counters of a running run.
func (m *Manager) overlay(j Job) Job {
	m.mu.Lock()
	r := m.live[j.ID]
	m.mu.Unlock()
	if r != nil && r.done != nil {
		j.BytesSent = max(j.BytesSent, r.baseSent+r.sent.Load())
		j.BytesReceived = max(j.BytesReceived, r.baseRecv+r.recv.Load())
	}
	return j
}

// List returns jobs, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]Job, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	jobs, err := m.store.ListJobs(ctx, f)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		jobs[i] = m.overlay(jobs[i])
	}
	return jobs, nil
}

// Cancel stops a job; a running guest tells its host.
func (m *Manager) Cancel(ctx context.Context, id string) (Job, error) {
	j, err := m.Get(ctx, id)
	if err != nil {
		return Job{}, err
	}
	if Final(j.Status) {
		return j, fmt.Errorf("%w: it is %s", ErrFinal, j.Status)
	}
	m.mu.Lock()
	r := m.live[id]
	if r != nil && r.done != nil {
		r.cancelled = true
		r.cancel()
		done := r.done
		m.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return Job{}, ctx.Err()
		}
		return m.Get(ctx, id)
	}
	delete(m.live, id)
	m.mu.Unlock()
	m.finalize(ctx, id, j.Role, StatusCancelled, "cancelled", nil)
	return m.Get(ctx, id)
}

// Close interrupts every run (running jobs stay running in the store and
// resume at the next start) and waits for them to end.
func (m *Manager) Close() error {
	m.closing.Store(true)
	m.cancel()
	m.wg.Wait()
	return nil
}

// update writes fn's changes to a job, logging a failure.
func (m *Manager) update(id string, fn func(*Job)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 10*time.Second)
	defer cancel()
	_, err := m.store.UpdateJob(ctx, id, func(j *Job) error {
		fn(j)
		j.Updated = m.opts.Now()
		return nil
	})
	if err != nil {
		m.opts.Log.Warn("update training job", "job", id, "err", err)
	}
}

// finalize ends a job that is not final yet with status and reason (and,
// on success, apply's fields), and drops its checkpoints.
func (m *Manager) finalize(ctx context.Context, id, role, status, reason string, apply func(*Job)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ended := false
	_, err := m.store.UpdateJob(ctx, id, func(j *Job) error {
		if Final(j.Status) {
			return errNoChange
		}
		now := m.opts.Now()
		j.Status, j.Error, j.Finished, j.Updated = status, reason, now, now
		if apply != nil {
			apply(j)
		}
		ended = true
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		m.opts.Log.Warn("end training job", "job", id, "err", err)
		return
	}
	if !ended {
		return
	}
	m.opts.Metrics.jobs.WithLabelValues(role, status).Inc()
	if err := m.store.DeleteCheckpoints(ctx, id); err != nil {
		m.opts.Log.Warn("delete training checkpoints", "job", id, "err", err)
	}
}

var errNoChange = errors.New("no change")

// errShutdown refuses messages once the node stops, so that an interrupted
// run does not abort its peer's side: the job resumes instead.
var errShutdown = errors.New("trainjob: the node is stopping")

// gate counts the bytes of the messages crossing a transport, and stops
// sending once the manager closes.
type gate struct {
	t hetero.Transport
	m *Manager
	r *run
}

func (g gate) Send(ctx context.Context, msg hetero.Message) error {
	if g.m.closing.Load() {
		return errShutdown
	}
	if err := g.t.Send(ctx, msg); err != nil {
		return err
	}
	n := int64(hetero.HeaderBytes + len(msg.Payload))
	g.r.sent.Add(n)
	g.m.opts.Metrics.bytes.WithLabelValues("sent").Add(float64(n))
	return nil
}

func (g gate) Recv(ctx context.Context) (hetero.Message, error) {
	msg, err := g.t.Recv(ctx)
	if err == nil {
		n := int64(hetero.HeaderBytes + len(msg.Payload))
		g.r.recv.Add(n)
		g.m.opts.Metrics.bytes.WithLabelValues("received").Add(float64(n))
	}
	return msg, err
}

// startGuest runs a guest job (resume: from its last checkpoint) in the
// background.
func (m *Manager) startGuest(j Job, table *dataset.Table, ref psiRef, resume bool) {
	ctx, cancel := context.WithCancel(m.ctx)
	r := &run{cancel: cancel, done: make(chan struct{}), baseSent: j.BytesSent, baseRecv: j.BytesReceived}
	m.mu.Lock()
	m.live[j.ID] = r
	m.mu.Unlock()
	m.opts.Metrics.running.WithLabelValues(RoleGuest).Inc()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.opts.Metrics.running.WithLabelValues(RoleGuest).Dec()
		defer close(r.done)
		defer cancel()
		var err error
		for attempt := 0; ; attempt++ {
			err = m.runGuest(ctx, r, j.ID, table, ref, resume)
			var oe *openError
			unreachable := errors.As(err, &oe) && !errors.Is(oe.err, ErrRefused)
			if err == nil || !(sessionLost(err) || unreachable) || ctx.Err() != nil || attempt+1 >= m.opts.ResumeAttempts {
				break
			}
			m.opts.Log.Warn("the host lost the training session or is unreachable: trying again", "job", j.ID, "attempt", attempt+1, "err", err)
			resume = resume || sessionLost(err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt+1) * 2 * time.Second):
			}
		}
		m.endRun(ctx, r, j.ID, RoleGuest, err)
	}()
}

// openError is a failure to open a session.
type openError struct{ err error }

func (e *openError) Error() string { return "open a session: " + e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

// sessionLost reports whether the host lost or closed the session
// mid-run (it restarted, or its service stopped): the guest then asks to
// resume, which a host whose job really ended refuses with its reason.
func sessionLost(err error) bool {
	if errors.Is(err, hetero.ErrClosed) {
		return true
	}
	return errors.Is(err, ErrSessionLost)
}

// endRun records how a run ended.
func (m *Manager) endRun(ctx context.Context, r *run, id, role string, err error) {
	m.mu.Lock()
	cancelled, superseded := r.cancelled, r.superseded
	if m.live[id] == r {
		delete(m.live, id)
	}
	m.mu.Unlock()
	m.update(id, func(v *Job) {
		v.BytesSent, v.BytesReceived = r.baseSent+r.sent.Load(), r.baseRecv+r.recv.Load()
	})
	switch {
	case err == nil:
		m.opts.Log.Info("training job done", "job", id, "role", role)
	case cancelled:
		m.finalize(ctx, id, role, StatusCancelled, "cancelled", nil)
	case superseded:
		// A resumed session took over the job.
	case m.closing.Load() && ctx.Err() != nil:
		m.opts.Log.Info("training job interrupted: it resumes at the next start", "job", id, "role", role)
		m.update(id, func(v *Job) {
			v.Error = "interrupted by a node shutdown; resumes when the node starts again"
			if role == RoleHost {
				v.Error = "interrupted by a node shutdown; waiting for the guest to resume"
			}
		})
	case role == RoleHost && interrupted(err):
		m.opts.Log.Warn("training job interrupted: waiting for the guest to resume", "job", id, "err", err)
		m.update(id, func(v *Job) {
			v.Error = "interrupted (" + clip(err.Error(), 200) + "); waiting for the guest to resume"
		})
	case errors.Is(err, hetero.ErrAborted) && strings.Contains(err.Error(), context.Canceled.Error()):
		m.finalize(ctx, id, role, StatusCancelled, "cancelled by the peer", nil)
	default:
		m.opts.Log.Warn("training job failed", "job", id, "role", role, "err", err)
		m.finalize(ctx, id, role, StatusFailed, clip(err.Error(), 500), nil)
	}
}

// interrupted reports whether a host's run ended because the guest went
// away (not because either side refused to go on).
func interrupted(err error) bool {
	return errors.Is(err, hetero.ErrClosed) || errors.Is(err, context.DeadlineExceeded)
}

// runGuest runs one session of a guest job.
func (m *Manager) runGuest(ctx context.Context, r *run, id string, table *dataset.Table, ref psiRef, resume bool) error {
	j, err := m.store.GetJob(ctx, id)
	if err != nil {
		return err
	}
	req := OpenRequest{GuestJob: j.ID, Algo: j.Algo, HostJob: j.PeerJob, PSIJob: ref.HostJob, PSISession: ref.Session, HostFile: j.HostFile}
	if resume && j.PeerJob != "" {
		req.Resume, req.ResumeEpoch = true, -1
		epochs, err := m.store.CheckpointEpochs(ctx, j.ID)
		if err != nil {
			return err
		}
		if len(epochs) > 0 {
			req.ResumeEpoch = epochs[len(epochs)-1]
		}
	}
	c, ans, err := m.opts.Dial(ctx, j.Peer, req)
	if err != nil {
		return &openError{fmt.Errorf("at %s: %w", j.Peer, err)}
	}
	t := gate{t: c, m: m, r: r}
	defer func() {
		if m.closing.Load() {
			return // leave the host's side waiting for the resume
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()
	if j.PeerJob != "" && ans.HostJob != j.PeerJob {
		return fmt.Errorf("%w: the host answered with job %s, this job trains with %s", hetero.ErrMismatch, ans.HostJob, j.PeerJob)
	}
	var cp *hetero.GuestCheckpoint
	if req.Resume && ans.ResumeEpoch >= 0 {
		c, err := m.store.LoadCheckpoint(ctx, j.ID, ans.ResumeEpoch)
		if err == nil {
			cp, err = hetero.ParseGuestCheckpoint(c.State)
		}
		if err != nil {
			err = fmt.Errorf("%w: the host resumes after epoch %d, and this guest has no usable checkpoint of it (%v)", hetero.ErrMismatch, ans.ResumeEpoch, err)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = t.Send(actx, hetero.Message{Type: hetero.MsgAbort, Payload: []byte(hetero.ErrMismatch.Error())})
			cancel()
			return err
		}
	}
	keep := -1
	if cp != nil {
		keep = cp.Epoch
	} else if err := m.store.DeleteCheckpoints(ctx, j.ID); err != nil {
		return err
	}
	m.update(j.ID, func(v *Job) {
		v.PeerJob, v.Error = ans.HostJob, ""
		var stats []EpochStat
		for _, e := range v.EpochStats {
			if e.Epoch <= keep {
				stats = append(stats, e)
			}
		}
		v.EpochStats = stats
	})
	g, err := hetero.NewGuest(hetero.GuestConfig{
		ModelID: j.ModelID, Version: j.Version, Train: j.Train, Logger: m.opts.Log, Resume: cp,
		Started: func() {
			m.update(j.ID, func(v *Job) {
				if v.Started.IsZero() {
					v.Started = m.opts.Now()
				}
			})
		},
		Checkpoint: func(cp *hetero.GuestCheckpoint) error {
			b, err := cp.Marshal()
			if err != nil {
				return err
			}
			return m.store.SaveCheckpoint(ctx, Checkpoint{JobID: j.ID, Epoch: cp.Epoch, State: b, CreatedAt: m.opts.Now()})
		},
		Progress: func(p hetero.Progress) {
			m.opts.Metrics.epoch.WithLabelValues(RoleGuest).Observe(p.Duration.Seconds())
			m.update(j.ID, func(v *Job) {
				v.EpochStats = append(v.EpochStats, EpochStat{Epoch: p.Epoch, Seconds: p.Duration.Seconds(),
					Loss: p.Validation.LogLoss, AUC: p.Validation.AUC, KS: p.Validation.KS, Best: p.Best})
				v.BytesSent, v.BytesReceived = r.baseSent+r.sent.Load(), r.baseRecv+r.recv.Load()
			})
		},
	}, table, []hetero.HostPeer{{Name: j.Peer, Transport: t}})
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = t.Send(actx, hetero.Message{Type: hetero.MsgAbort, Payload: []byte(hetero.ErrMismatch.Error())})
		cancel()
		return err
	}
	gm, err := g.Run(ctx)
	if err != nil {
		return err
	}
	b, err := gm.Export()
	if err != nil {
		return err
	}
	path, err := m.writeModel(j.ID+"-guest.json", b)
	if err != nil {
		return err
	}
	if m.opts.Models != nil {
		card, err := json.Marshal(gm.Card)
		if err != nil {
			return err
		}
		if err := m.opts.Models.Register(ctx, RoleGuest, gm.ModelID, gm.Version, b, card); err != nil {
			return fmt.Errorf("register the guest's half: %w", err)
		}
	}
	test := gm.Metrics.Test
	m.finalize(ctx, j.ID, RoleGuest, StatusSucceeded, "", func(v *Job) {
		v.Test, v.ModelID, v.Version, v.ModelPath = &test, gm.ModelID, gm.Version, path
		v.BytesSent, v.BytesReceived = r.baseSent+r.sent.Load(), r.baseRecv+r.recv.Load()
	})
	return nil
}

// Accept is the peer API's Acceptor: it starts the host's side of the
// session the guest party opened: the host job req names (a resume), a
// waiting host job for the guest (aligned to the PSI run req names, if
// any), or a host job it creates for the host's PSI job of that run.
func (m *Manager) Accept(party, session string, req OpenRequest, t hetero.Transport, done func()) (OpenAnswer, error) {
	m.accepting.Lock()
	ans, err := m.accept(party, req, t, done)
	m.accepting.Unlock()
	if err != nil {
		m.opts.Log.Warn("training session refused", "peer", party, "err", err)
		done()
		var ce *hostDataError
		if errors.As(err, &ce) {
			// The cause may quote the host's file: it stays in the host's log.
			return ans, errors.New(ce.public)
		}
	}
	return ans, err
}

// hostDataError is a failure to read the host's own data: the guest is
// told that it failed, the host's log why.
type hostDataError struct {
	public string
	err    error
}

func (e *hostDataError) Error() string { return e.public + ": " + e.err.Error() }
func (e *hostDataError) Unwrap() error { return e.err }

func (m *Manager) accept(party string, req OpenRequest, t hetero.Transport, done func()) (OpenAnswer, error) {
	if m.closing.Load() {
		return OpenAnswer{}, errShutdown
	}
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	j, err := m.pickHostJob(ctx, party, req)
	if err != nil {
		return OpenAnswer{}, err
	}
	// A live run of the job (the guest lost its session): stop it first.
	m.mu.Lock()
	old := m.live[j.ID]
	m.mu.Unlock()
	var table *dataset.Table
	if old != nil && old.done != nil {
		m.mu.Lock()
		old.superseded = true
		old.cancel()
		m.mu.Unlock()
		select {
		case <-old.done:
		case <-ctx.Done():
			return OpenAnswer{}, errors.New("the previous session of the job does not end")
		}
	} else if old != nil {
		table = old.table
	}
	if table == nil {
		if table, _, err = m.loadTable(ctx, RoleHost, party, j.File, j.PSIJob); err != nil {
			m.finalize(ctx, j.ID, RoleHost, StatusFailed, clip(err.Error(), 500), nil)
			return OpenAnswer{}, &hostDataError{public: fmt.Sprintf("host job %s cannot read its rows (the host's log says why)", j.ID), err: err}
		}
	}
	ans := OpenAnswer{HostJob: j.ID, ResumeEpoch: -1}
	var cp *hetero.HostCheckpoint
	if req.Resume && req.ResumeEpoch >= 0 {
		epochs, err := m.store.CheckpointEpochs(ctx, j.ID)
		if err != nil {
			return OpenAnswer{}, err
		}
		for k := len(epochs) - 1; k >= 0; k-- {
			if epochs[k] <= req.ResumeEpoch {
				c, err := m.store.LoadCheckpoint(ctx, j.ID, epochs[k])
				if err != nil {
					return OpenAnswer{}, err
				}
				if cp, err = hetero.ParseHostCheckpoint(c.State); err != nil {
					return OpenAnswer{}, fmt.Errorf("host job %s: checkpoint of epoch %d: %w", j.ID, epochs[k], err)
				}
				ans.ResumeEpoch = epochs[k]
				break
			}
		}
	}
	if cp == nil {
		if err := m.store.DeleteCheckpoints(ctx, j.ID); err != nil {
			return OpenAnswer{}, err
		}
	}
	var base Job
	if base, err = m.store.UpdateJob(ctx, j.ID, func(v *Job) error {
		if Final(v.Status) {
			return fmt.Errorf("host job %s is %s", v.ID, v.Status)
		}
		v.Status, v.PeerJob, v.Error, v.Updated = StatusRunning, req.GuestJob, "", m.opts.Now()
		if v.Started.IsZero() {
			v.Started = m.opts.Now()
		}
		return nil
	}); err != nil {
		return OpenAnswer{}, err
	}
	rctx, rcancel := context.WithCancel(m.ctx)
	r := &run{cancel: rcancel, done: make(chan struct{}), baseSent: base.BytesSent, baseRecv: base.BytesReceived}
	last := time.Time{}
	h, err := hetero.NewHost(hetero.HostConfig{Name: m.opts.Party, Logger: m.opts.Log, Resume: cp,
		Checkpoint: func(cp *hetero.HostCheckpoint) error {
			now := time.Now()
			if !last.IsZero() {
				m.opts.Metrics.epoch.WithLabelValues(RoleHost).Observe(now.Sub(last).Seconds())
			}
			last = now
			b, err := cp.Marshal()
			if err != nil {
				return err
			}
			if err := m.store.SaveCheckpoint(rctx, Checkpoint{JobID: j.ID, Epoch: cp.Epoch, State: b, CreatedAt: m.opts.Now()}); err != nil {
				return err
			}
			m.update(j.ID, func(v *Job) {
				v.BytesSent, v.BytesReceived = r.baseSent+r.sent.Load(), r.baseRecv+r.recv.Load()
			})
			return nil
		}}, table, gate{t: t, m: m, r: r})
	if err != nil {
		rcancel()
		m.finalize(ctx, j.ID, RoleHost, StatusFailed, clip(err.Error(), 500), nil)
		return OpenAnswer{}, err
	}
	m.mu.Lock()
	m.live[j.ID] = r
	m.mu.Unlock()
	m.opts.Metrics.running.WithLabelValues(RoleHost).Inc()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
		defer m.opts.Metrics.running.WithLabelValues(RoleHost).Dec()
		defer close(r.done)
		defer rcancel()
		err := m.runHost(rctx, r, j.ID, h)
		m.endRun(rctx, r, j.ID, RoleHost, err)
	}()
	return ans, nil
}

func (m *Manager) runHost(ctx context.Context, r *run, id string, h *hetero.Host) error {
	hm, err := h.Run(ctx)
	if err != nil {
		return err
	}
	b, err := hm.Export()
	if err != nil {
		return err
	}
	path, err := m.writeModel(id+"-host.json", b)
	if err != nil {
		return err
	}
	if m.opts.Models != nil {
		hc := hostCard{ModelID: hm.ModelID, Version: hm.Version, HostIndex: hm.HostIndex, Features: hm.Features,
			TrainedAt: hm.TrainedAt, BestEpoch: hm.BestEpoch, Metrics: "held by the guest (labels never reach the host): see the guest's card of this model id and version"}
		if j, err := m.store.GetJob(ctx, id); err == nil {
			hc.Data = &hostCardData{Guest: j.Peer, GuestJob: j.PeerJob, PSIJob: j.PSIJob, File: j.File, Rows: j.Rows}
			if !j.Started.IsZero() {
				hc.StartedAt, hc.Duration = j.Started, hm.TrainedAt.Sub(j.Started).Round(time.Millisecond).String()
			}
		}
		card, err := json.Marshal(hc)
		if err != nil {
			return err
		}
		if err := m.opts.Models.Register(ctx, RoleHost, hm.ModelID, hm.Version, b, card); err != nil {
			return fmt.Errorf("register the host's half: %w", err)
		}
	}
	m.finalize(ctx, id, RoleHost, StatusSucceeded, "", func(v *Job) {
		v.ModelID, v.Version, v.ModelPath = hm.ModelID, hm.Version, path
		v.BytesSent, v.BytesReceived = r.baseSent+r.sent.Load(), r.baseRecv+r.recv.Load()
	})
	return nil
}

// hostCard is the card of a host's half: the data it was trained on and
// when. The host holds no labels, so no metrics (the guest's card has
// them, with the run's privacy parameters).
type hostCard struct {
	ModelID   string        `json:"model_id"`
	Version   string        `json:"version"`
	HostIndex int           `json:"host_index"`
	Features  []string      `json:"features"`
	Data      *hostCardData `json:"data,omitempty"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	TrainedAt time.Time     `json:"trained_at"`
	Duration  string        `json:"duration,omitempty"`
	BestEpoch int           `json:"best_epoch"`
	Metrics   string        `json:"metrics"`
}

// hostCardData is what the host's half was trained on.
type hostCardData struct {
	Guest    string `json:"guest"`
	GuestJob string `json:"guest_job,omitempty"`
	PSIJob   string `json:"psi_job,omitempty"`
	File     string `json:"file"`
	Rows     int    `json:"rows"`
}

// pickHostJob finds the host job for a session of party.
func (m *Manager) pickHostJob(ctx context.Context, party string, req OpenRequest) (Job, error) {
	if req.HostJob != "" {
		j, err := m.store.GetJob(ctx, req.HostJob)
		switch {
		case errors.Is(err, ErrNotFound):
			return Job{}, fmt.Errorf("no host job %s", req.HostJob)
		case err != nil:
			return Job{}, err
		case j.Role != RoleHost || j.Peer != party:
			return Job{}, fmt.Errorf("no host job %s for %s", req.HostJob, party)
		case j.PeerJob != "" && j.PeerJob != req.GuestJob:
			return Job{}, fmt.Errorf("host job %s trains with another guest job", j.ID)
		case Final(j.Status):
			return Job{}, fmt.Errorf("host job %s is %s (%s): it cannot resume; start new jobs", j.ID, j.Status, clip(j.Error, 200))
		}
		return j, nil
	}
	waiting, err := m.store.ListJobs(ctx, Filter{Role: RoleHost, Status: []string{StatusWaiting}, Limit: 1000})
	if err != nil {
		return Job{}, err
	}
	if req.PSIJob == "" && req.PSISession == "" {
		for k := len(waiting) - 1; k >= 0; k-- { // oldest first
			if waiting[k].Peer == party {
				return waiting[k], nil
			}
		}
		return Job{}, fmt.Errorf("no host job waits for %s", party)
	}
	pj, err := m.hostPSIJob(ctx, party, req)
	if err != nil {
		return Job{}, err
	}
	for k := len(waiting) - 1; k >= 0; k-- {
		if waiting[k].Peer == party && waiting[k].PSIJob == pj.ID {
			return waiting[k], nil
		}
	}
	// None waits: create the host's job for its PSI job, on the CSV that
	// PSI job read. The guest may name that file (host_file) but no other:
	// the host alone decides which of its files a guest's session reads
	// (its operator starts a host job for any other file).
	file, ok := m.psiInputFile(pj)
	if !ok {
		return Job{}, fmt.Errorf("the host's PSI job %s did not read a CSV in the host's data directory: the host's operator must start the host job", pj.ID)
	}
	if req.HostFile != "" && filepath.Clean(req.HostFile) != file {
		return Job{}, fmt.Errorf("host_file is not the input of the host's PSI job %s: the host's operator must start a host job for another file", pj.ID)
	}
	table, _, err := m.loadTable(ctx, RoleHost, party, file, pj.ID)
	if err != nil {
		return Job{}, &hostDataError{public: fmt.Sprintf("the host cannot read the rows of its PSI job %s (the host's log says why)", pj.ID), err: err}
	}
	id, err := newID()
	if err != nil {
		return Job{}, err
	}
	now := m.opts.Now()
	j := Job{ID: id, Role: RoleHost, Algo: AlgoHeteroLR, Peer: party, PeerJob: req.GuestJob, File: file, PSIJob: pj.ID,
		Rows: table.Len(), Features: len(table.Features), Status: StatusWaiting, CreatedBy: "peer:" + party, Created: now, Updated: now}
	if err := m.store.CreateJob(ctx, j); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	m.live[id] = &run{table: table}
	m.mu.Unlock()
	m.opts.Log.Info("host training job created for the guest's session", "job", id, "peer", party, "psi_job", pj.ID)
	return j, nil
}

func (m *Manager) writeModel(name string, b []byte) (string, error) {
	if err := os.MkdirAll(m.opts.ModelDir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(m.opts.ModelDir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// clip shortens s to at most n bytes, for error texts.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
