package trainjob

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"
)

// Filter selects jobs to list.
type Filter struct {
	Role   string   // empty: both
	Status []string // empty: all
	Limit  int      // 0: 100
}

// Checkpoint is one party's state after a finished epoch of a job (a
// hetero.GuestCheckpoint or hetero.HostCheckpoint document).
type Checkpoint struct {
	JobID     string
	Epoch     int
	State     []byte
	CreatedAt time.Time
}

// Store persists jobs and their per-epoch checkpoints.
type Store interface {
	CreateJob(ctx context.Context, j Job) error
	GetJob(ctx context.Context, id string) (Job, error) // ErrNotFound
	// ListJobs returns jobs newest first.
	ListJobs(ctx context.Context, f Filter) ([]Job, error)
	// UpdateJob reads the job, calls fn and writes what fn left, in one
	// transaction; an error of fn aborts the update and is returned.
	UpdateJob(ctx context.Context, id string, fn func(*Job) error) (Job, error)

	// SaveCheckpoint stores (or replaces) the checkpoint of one epoch.
	SaveCheckpoint(ctx context.Context, c Checkpoint) error
	// CheckpointEpochs lists the epochs with a checkpoint, ascending.
	CheckpointEpochs(ctx context.Context, jobID string) ([]int, error)
	LoadCheckpoint(ctx context.Context, jobID string, epoch int) (Checkpoint, error) // ErrNotFound
	DeleteCheckpoints(ctx context.Context, jobID string) error
}

// ErrExists reports a job id that is taken.
var ErrExists = errors.New("trainjob: job exists")

// Final reports whether status is final.
func Final(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCancelled
}

// MemStore is a Store in memory (a node without a database, tests).
type MemStore struct {
	mu    sync.Mutex
	jobs  map[string]Job
	ckpts map[string]map[int]Checkpoint
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{jobs: map[string]Job{}, ckpts: map[string]map[int]Checkpoint{}}
}

var _ Store = (*MemStore)(nil)

// clone deep-copies the slices and pointers of j.
func clone(j Job) Job {
	j.EpochStats = slices.Clone(j.EpochStats)
	if j.Test != nil {
		t := *j.Test
		j.Test = &t
	}
	return j
}

// CreateJob implements Store.
func (s *MemStore) CreateJob(_ context.Context, j Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[j.ID]; ok {
		return ErrExists
	}
	s.jobs[j.ID] = clone(j)
	return nil
}

// GetJob implements Store.
func (s *MemStore) GetJob(_ context.Context, id string) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, ErrNotFound
	}
	return clone(j), nil
}

// ListJobs implements Store.
func (s *MemStore) ListJobs(_ context.Context, f Filter) ([]Job, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Job
	for _, j := range s.jobs {
		if (f.Role == "" || j.Role == f.Role) && (len(f.Status) == 0 || slices.Contains(f.Status, j.Status)) {
			out = append(out, clone(j))
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Created.Equal(out[b].Created) {
			return out[a].Created.After(out[b].Created)
		}
		return out[a].ID > out[b].ID
	})
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// UpdateJob implements Store.
func (s *MemStore) UpdateJob(_ context.Context, id string, fn func(*Job) error) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, ErrNotFound
	}
	j = clone(j)
	if err := fn(&j); err != nil {
		return Job{}, err
	}
	j.ID = id
	s.jobs[id] = clone(j)
	return j, nil
}

// SaveCheckpoint implements Store.
func (s *MemStore) SaveCheckpoint(_ context.Context, c Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[c.JobID]; !ok {
		return ErrNotFound
	}
	if s.ckpts[c.JobID] == nil {
		s.ckpts[c.JobID] = map[int]Checkpoint{}
	}
	c.State = slices.Clone(c.State)
	s.ckpts[c.JobID][c.Epoch] = c
	return nil
}

// CheckpointEpochs implements Store.
func (s *MemStore) CheckpointEpochs(_ context.Context, jobID string) ([]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for e := range s.ckpts[jobID] {
		out = append(out, e)
	}
	slices.Sort(out)
	return out, nil
}

// LoadCheckpoint implements Store.
func (s *MemStore) LoadCheckpoint(_ context.Context, jobID string, epoch int) (Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.ckpts[jobID][epoch]
	if !ok {
		return Checkpoint{}, ErrNotFound
	}
	c.State = slices.Clone(c.State)
	return c, nil
}

// DeleteCheckpoints implements Store.
func (s *MemStore) DeleteCheckpoints(_ context.Context, jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ckpts, jobID)
	return nil
}
