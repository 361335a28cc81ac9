package lr

import (
	"fmt"
	"math/rand/v2"
)

// Plan is the batch plan: the training rows partitioned once into batches
// by a seeded permutation, and a seeded batch order per epoch. The parties
// of a federated run each build the same plan from (rows, batch size, seed),
// which are not secret; the partition being fixed lets the guest encrypt
// per-batch constants (class weights) once for the whole run.
type Plan struct {
	batches [][]int
	seed    uint64
}

// NewPlan partitions n rows into batches of size batch (the last one may be
// smaller).
func NewPlan(n, batch int, seed uint64) (Plan, error) {
	if n < 1 || batch < 1 {
		return Plan{}, fmt.Errorf("plan: %d rows in batches of %d", n, batch)
	}
	perm := rand.New(rand.NewPCG(seed, 0x706c616e)).Perm(n)
	p := Plan{seed: seed}
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		p.batches = append(p.batches, perm[lo:hi:hi])
	}
	return p, nil
}

// Batches returns the number of batches.
func (p Plan) Batches() int { return len(p.batches) }

// Batch returns the row indices of batch k (read-only).
func (p Plan) Batch(k int) []int { return p.batches[k] }

// MaxBatch returns the size of the largest batch.
func (p Plan) MaxBatch() int {
	m := 0
	for _, b := range p.batches {
		m = max(m, len(b))
	}
	return m
}

// Order returns the order in which epoch e visits the batches.
func (p Plan) Order(e int) []int {
	return rand.New(rand.NewPCG(p.seed, 0x6f726465<<32|uint64(uint32(e)))).Perm(len(p.batches))
}

// EarlyStopping tracks the validation loss across epochs.
type EarlyStopping struct {
	Patience  int
	MinDelta  float64
	best      float64
	bestEpoch int
	started   bool
}

// NewEarlyStopping returns the rule of cfg.
func NewEarlyStopping(cfg Config) *EarlyStopping {
	return &EarlyStopping{Patience: cfg.Patience, MinDelta: cfg.MinDelta, bestEpoch: -1}
}

// Enabled reports whether the rule can stop training.
func (s *EarlyStopping) Enabled() bool { return s.Patience > 0 }

// Observe records the validation loss of epoch e. It reports whether this
// epoch is the best so far (its weights should be kept) and whether
// training should stop after it.
func (s *EarlyStopping) Observe(e int, loss float64) (best, stop bool) {
	if !s.started || loss < s.best-s.MinDelta {
		s.started, s.best, s.bestEpoch = true, loss, e
		return true, false
	}
	return false, s.Enabled() && e-s.bestEpoch >= s.Patience
}

// Best returns the best epoch and its loss (-1 before any observation).
func (s *EarlyStopping) Best() (int, float64) { return s.bestEpoch, s.best }

// StoppingState is the state of an EarlyStopping rule, for a checkpoint.
type StoppingState struct {
	Started   bool    `json:"started"`
	Best      float64 `json:"best"`
	BestEpoch int     `json:"best_epoch"`
}

// State returns the rule's state.
func (s *EarlyStopping) State() StoppingState {
	return StoppingState{Started: s.started, Best: s.best, BestEpoch: s.bestEpoch}
}

// Restore sets the rule's state from a checkpoint.
func (s *EarlyStopping) Restore(st StoppingState) {
	s.started, s.best, s.bestEpoch = st.Started, st.Best, st.BestEpoch
}
