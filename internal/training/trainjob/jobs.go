package trainjob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
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
)

// Request creates a job.
type Request struct {
	Role    string // guest or host
	Peer    string // the other party
	File    string // the party's aligned CSV, relative to the input directory
	ModelID string // guest only; empty draws one
	Epochs  int    // guest only; 0: the default
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

// Job is a training job as the API shows it.
type Job struct {
	ID       string
	Role     string
	Peer     string
	File     string
	ModelID  string
	Epochs   int
	Rows     int
	Features int
	Status   string
	Error    string
	Created  time.Time
	Started  time.Time // the first epoch began (after the setup)
	Finished time.Time
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

// Dialer opens a session at the named peer's training service.
type Dialer func(ctx context.Context, peer string) (*Client, error)

// ManagerOptions configure the job manager.
type ManagerOptions struct {
	Party    string // this node's party (the model card's host name on a host)
	InputDir string // job files are read below it
	ModelDir string // exported halves are written in it
	Dial     Dialer
	// Allowed reports whether a party is a configured peer.
	Allowed func(string) bool
	Log     *slog.Logger
	Now     func() time.Time
}

// Manager runs training jobs in memory: jobs do not survive a restart.
type Manager struct {
	opts   ManagerOptions
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	Job
	table  *dataset.Table
	ctx    context.Context
	cancel context.CancelFunc
}

// NewManager returns a manager.
func NewManager(opts ManagerOptions) *Manager {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Allowed == nil {
		opts.Allowed = func(string) bool { return false }
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{opts: opts, ctx: ctx, cancel: cancel, jobs: map[string]*job{}}
}

func newID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "tj-" + hex.EncodeToString(b[:]), nil
}

func (m *Manager) inputPath(file string) (string, error) {
	if m.opts.InputDir == "" {
		return "", fmt.Errorf("%w: this node has no input directory", ErrInvalid)
	}
	if !filepath.IsLocal(file) {
		return "", fmt.Errorf("%w: file %.200q must be a relative path below the node's input directory", ErrInvalid, file)
	}
	return filepath.Join(m.opts.InputDir, file), nil
}

// Create validates r, loads the party's file and starts the job (a host
// job waits for its guest).
func (m *Manager) Create(ctx context.Context, r Request) (Job, error) {
	if r.Role != RoleGuest && r.Role != RoleHost {
		return Job{}, fmt.Errorf("%w: role must be guest or host", ErrInvalid)
	}
	if pki.CheckPartyName(r.Peer) != nil || !m.opts.Allowed(r.Peer) {
		return Job{}, fmt.Errorf("%w: peer %.70q is not a configured peer", ErrInvalid, r.Peer)
	}
	if r.Epochs < 0 || r.Epochs > lr.MaxEpochs {
		return Job{}, fmt.Errorf("%w: epochs must be in 0..%d", ErrInvalid, lr.MaxEpochs)
	}
	if len(r.ModelID) > 64 {
		return Job{}, fmt.Errorf("%w: model_id is at most 64 characters", ErrInvalid)
	}
	if r.Role == RoleGuest && m.opts.Dial == nil {
		return Job{}, fmt.Errorf("%w: this node cannot reach peers", ErrInvalid)
	}
	path, err := m.inputPath(r.File)
	if err != nil {
		return Job{}, err
	}
	table, err := dataset.ReadFile(path, r.Role == RoleGuest)
	if err != nil {
		return Job{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id, err := newID()
	if err != nil {
		return Job{}, err
	}
	epochs := r.Epochs
	if epochs == 0 && r.Role == RoleGuest {
		epochs = lr.DefaultConfig().Epochs
	}
	j := &job{Job: Job{ID: id, Role: r.Role, Peer: r.Peer, File: r.File, ModelID: r.ModelID, Epochs: epochs,
		Rows: table.Len(), Features: len(table.Features), Status: StatusWaiting, Created: m.opts.Now()}, table: table}
	jctx, cancel := context.WithCancel(m.ctx)
	j.ctx, j.cancel = jctx, cancel
	m.mu.Lock()
	m.jobs[id] = j
	m.mu.Unlock()
	if r.Role == RoleGuest {
		j.Status = StatusRunning
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer cancel()
			m.runGuest(jctx, j)
		}()
	}
	return m.Get(ctx, id)
}

// Get returns a job.
func (m *Manager) Get(_ context.Context, id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, ErrNotFound
	}
	return j.snapshot(), nil
}

func (j *job) snapshot() Job {
	c := j.Job
	c.EpochStats = append([]EpochStat(nil), j.EpochStats...)
	if j.Test != nil {
		t := *j.Test
		c.Test = &t
	}
	return c
}

// List returns the jobs, newest first.
func (m *Manager) List(_ context.Context) []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Job, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.snapshot())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Created.After(out[b].Created) })
	return out
}

// Cancel stops a job.
func (m *Manager) Cancel(ctx context.Context, id string) (Job, error) {
	m.mu.Lock()
	j, ok := m.jobs[id]
	if ok && (j.Status == StatusWaiting || j.Status == StatusRunning) {
		if j.Status == StatusWaiting {
			j.Status, j.Finished = StatusCancelled, m.opts.Now()
			j.table = nil
		}
		j.cancel()
	}
	m.mu.Unlock()
	if !ok {
		return Job{}, ErrNotFound
	}
	return m.Get(ctx, id)
}

// Close cancels every job and waits for the runs to end.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	return nil
}

func (m *Manager) update(j *job, f func(*Job)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&j.Job)
}

func (m *Manager) end(ctx context.Context, j *job, path string, err error) {
	m.update(j, func(v *Job) {
		v.Finished = m.opts.Now()
		switch {
		case err == nil:
			v.Status, v.ModelPath = StatusSucceeded, path
		case ctx.Err() != nil:
			v.Status, v.Error = StatusCancelled, "cancelled"
		default:
			v.Status, v.Error = StatusFailed, clip(err.Error(), 500)
		}
	})
	m.mu.Lock()
	j.table = nil
	m.mu.Unlock()
	if err != nil {
		m.opts.Log.Warn("training job failed", "job", j.ID, "role", j.Role, "err", err)
	} else {
		m.opts.Log.Info("training job done", "job", j.ID, "role", j.Role, "model", path)
	}
}

// counter counts the bytes of the messages crossing a transport.
type counter struct {
	t    hetero.Transport
	m    *Manager
	j    *job
	sent bool
}

func (c counter) Send(ctx context.Context, msg hetero.Message) error {
	if err := c.t.Send(ctx, msg); err != nil {
		return err
	}
	c.m.update(c.j, func(v *Job) { v.BytesSent += int64(hetero.HeaderBytes + len(msg.Payload)) })
	return nil
}

func (c counter) Recv(ctx context.Context) (hetero.Message, error) {
	msg, err := c.t.Recv(ctx)
	if err == nil {
		c.m.update(c.j, func(v *Job) { v.BytesReceived += int64(hetero.HeaderBytes + len(msg.Payload)) })
	}
	return msg, err
}

func (m *Manager) runGuest(ctx context.Context, j *job) {
	var path string
	err := func() error {
		c, err := m.opts.Dial(ctx, j.Peer)
		if err != nil {
			return fmt.Errorf("open a session at %s: %w", j.Peer, err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = c.Close(cctx)
		}()
		cfg := lr.DefaultConfig()
		cfg.Epochs = j.Epochs
		g, err := hetero.NewGuest(hetero.GuestConfig{
			ModelID: j.ModelID, Train: cfg, Logger: m.opts.Log,
			Started: func() { m.update(j, func(v *Job) { v.Started = m.opts.Now() }) },
			Progress: func(p hetero.Progress) {
				m.update(j, func(v *Job) {
					v.EpochStats = append(v.EpochStats, EpochStat{Epoch: p.Epoch, Seconds: p.Duration.Seconds(),
						Loss: p.Validation.LogLoss, AUC: p.Validation.AUC, KS: p.Validation.KS, Best: p.Best})
				})
			},
		}, j.table, []hetero.HostPeer{{Name: j.Peer, Transport: counter{t: c, m: m, j: j}}})
		if err != nil {
			return err
		}
		gm, err := g.Run(ctx)
		if err != nil {
			return err
		}
		m.update(j, func(v *Job) {
			t := gm.Metrics.Test
			v.Test, v.ModelID = &t, gm.ModelID
		})
		b, err := gm.Export()
		if err != nil {
			return err
		}
		path, err = m.writeModel(j.ID+"-guest.json", b)
		return err
	}()
	m.end(ctx, j, path, err)
}

// Accept is the peer API's Acceptor: it starts the oldest waiting host job
// for party.
func (m *Manager) Accept(party, session string, t hetero.Transport, done func()) error {
	m.mu.Lock()
	var pick *job
	for _, j := range m.jobs {
		if j.Role == RoleHost && j.Status == StatusWaiting && j.Peer == party && (pick == nil || j.Created.Before(pick.Created)) {
			pick = j
		}
	}
	if pick == nil {
		m.mu.Unlock()
		return fmt.Errorf("no host job waits for %s", party)
	}
	pick.Status = StatusRunning
	table := pick.table
	m.mu.Unlock()
	h, err := hetero.NewHost(hetero.HostConfig{Name: m.opts.Party, Logger: m.opts.Log}, table, counter{t: t, m: m, j: pick})
	if err != nil {
		m.end(pick.ctx, pick, "", err)
		pick.cancel()
		done()
		return err
	}
	m.update(pick, func(v *Job) { v.Started = m.opts.Now() })
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
		ctx := pick.ctx
		defer pick.cancel()
		var path string
		hm, err := h.Run(ctx)
		if err == nil {
			m.update(pick, func(v *Job) { v.ModelID = hm.ModelID })
			var b []byte
			if b, err = hm.Export(); err == nil {
				path, err = m.writeModel(pick.ID+"-host.json", b)
			}
		}
		m.end(ctx, pick, path, err)
	}()
	return nil
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
