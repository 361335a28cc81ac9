package secureboost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Resuming a run.
//
// After every finished tree each party can save its own state
// (GuestConfig.Checkpoint, HostConfig.Checkpoint): the guest the trees so
// far (structure, leaf weights, its own splits, the hosts' split ids),
// the training and validation scores, the early-stopping state, the
// history and each host's split count; a host its splits (feature and
// threshold by split id), which never leave it. The guest saves before
// it sends TreeEnd, so a host never holds a tree the guest does not. A
// resumed run is a new session — new CKKS keys, new stride and budget
// checks — that starts at the tree after the checkpoint: Hello carries
// that start tree, a host whose checkpoint is at another tree, or was
// taken for another model, rows or hyper-parameters, refuses with
// ErrMismatch, and the guest checks that the host holds as many splits as
// its checkpoint expects. Binning, row samples and split ids depend only
// on the data, the seed and the restored state, and the histograms are
// exact integers (flooding never reaches them), so a resumed run computes
// exactly what an uninterrupted one does (unless a host adds histogram
// noise).

// GuestCheckpoint is the guest's state after a finished tree.
type GuestCheckpoint struct {
	ModelID  string        `json:"model_id"`
	Version  string        `json:"version"`
	IDDigest string        `json:"id_digest"`
	Train    Config        `json:"train"`
	Split    dataset.Split `json:"split"`
	// Tree is the last finished tree; Stop says the run ends after it.
	Tree      int              `json:"tree"`
	Stop      bool             `json:"stop"`
	Trees     []Tree           `json:"trees"`
	Kept      int              `json:"kept"`
	Stopping  lr.StoppingState `json:"stopping"`
	History   []TreeStats      `json:"history"`
	Scores    []float64        `json:"scores"`
	ValScores []float64        `json:"validation_scores"`
	// HostSplits is each host's number of splits; HostFirst each host's
	// first split id of every tree.
	HostSplits []int   `json:"host_splits"`
	HostFirst  [][]int `json:"host_first"`
}

// HostCheckpoint is a host's state after a finished tree. It holds the
// host's thresholds: it is stored by the host only.
type HostCheckpoint struct {
	ModelID  string        `json:"model_id"`
	Version  string        `json:"version"`
	IDDigest string        `json:"id_digest"`
	Train    Config        `json:"train"`
	Split    dataset.Split `json:"split"`
	Tree     int           `json:"tree"`
	Stop     bool          `json:"stop"`
	Splits   []HostSplit   `json:"splits"`
}

// maxCheckpointBytes bounds a checkpoint document.
const maxCheckpointBytes = 256 << 20

// Marshal returns the checkpoint's JSON form.
func (c *GuestCheckpoint) Marshal() ([]byte, error) { return json.Marshal(c) }

// Marshal returns the checkpoint's JSON form.
func (c *HostCheckpoint) Marshal() ([]byte, error) { return json.Marshal(c) }

func parseCheckpoint(b []byte, v any) error {
	if len(b) > maxCheckpointBytes {
		return fmt.Errorf("%w: checkpoint of %d bytes", ErrOversized, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the checkpoint", ErrMalformed)
	}
	return nil
}

func (c *GuestCheckpoint) check() error {
	if err := c.Train.Validate(); err != nil {
		return err
	}
	switch {
	case checkIDs(c.ModelID, c.Version) != nil:
		return errors.New("model id or version")
	case c.Tree < 0 || c.Tree >= c.Train.Trees || len(c.Trees) != c.Tree+1 || len(c.History) != c.Tree+1:
		return errors.New("tree count inconsistent")
	case c.Kept < 0 || c.Kept > c.Tree+1:
		return errors.New("kept trees out of range")
	case len(c.HostSplits) < 1 || len(c.HostSplits) > MaxHosts || len(c.HostFirst) != len(c.HostSplits):
		return errors.New("hosts")
	case !finite(c.Stopping.Best):
		return errors.New("non-finite value")
	}
	for _, v := range append(append([]float64(nil), c.Scores...), c.ValScores...) {
		if !finite(v) {
			return errors.New("non-finite score")
		}
	}
	for h, first := range c.HostFirst {
		if len(first) != c.Tree+1 {
			return fmt.Errorf("host %d: first split ids of %d trees", h, len(first))
		}
		prev := 0
		for _, f := range first {
			if f < prev || f > c.HostSplits[h] {
				return fmt.Errorf("host %d: first split ids out of order", h)
			}
			prev = f
		}
	}
	for k := range c.Trees {
		if err := c.Trees[k].check(len(c.HostSplits), dataset.MaxFeatures, c.HostSplits); err != nil {
			return fmt.Errorf("tree %d: %v", k, err)
		}
	}
	return nil
}

// ParseGuestCheckpoint decodes and checks a guest checkpoint.
func ParseGuestCheckpoint(b []byte) (*GuestCheckpoint, error) {
	var c GuestCheckpoint
	if err := parseCheckpoint(b, &c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: guest checkpoint: %v", ErrMalformed, err)
	}
	return &c, nil
}

func (c *HostCheckpoint) check() error {
	if err := c.Train.Validate(); err != nil {
		return err
	}
	switch {
	case checkIDs(c.ModelID, c.Version) != nil:
		return errors.New("model id or version")
	case c.Tree < 0 || c.Tree >= c.Train.Trees:
		return errors.New("tree out of range")
	case len(c.Splits) > MaxTrees<<MaxDepth:
		return errors.New("too many splits")
	}
	for k, s := range c.Splits {
		if s.Feature < 0 || s.Feature >= dataset.MaxFeatures || !finite(s.Threshold) || s.Tree < 0 || s.Tree > c.Tree ||
			(k > 0 && s.Tree < c.Splits[k-1].Tree) || s.Node < 0 || s.Node >= 1<<(MaxDepth+1) {
			return fmt.Errorf("split %d", k)
		}
	}
	return nil
}

// ParseHostCheckpoint decodes and checks a host checkpoint.
func ParseHostCheckpoint(b []byte) (*HostCheckpoint, error) {
	var c HostCheckpoint
	if err := parseCheckpoint(b, &c); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: host checkpoint: %v", ErrMalformed, err)
	}
	return &c, nil
}

// checkpoint returns the guest's state after tree t.
func (r *guestRun) checkpoint(t int, stop bool) *GuestCheckpoint {
	cfg := r.g.cfg
	cp := &GuestCheckpoint{
		ModelID: cfg.ModelID, Version: cfg.Version, IDDigest: idDigest(r.g.table.IDs), Train: cfg.Train, Split: cfg.Split,
		Tree: t, Stop: stop, Trees: append([]Tree(nil), r.b.trees...), Kept: r.b.best, Stopping: r.b.stop.State(),
		History: append([]TreeStats(nil), r.b.history...), Scores: append([]float64(nil), r.b.F...),
		ValScores: append([]float64(nil), r.b.Fval...),
	}
	for _, gh := range r.hosts {
		cp.HostSplits = append(cp.HostSplits, gh.splits)
		cp.HostFirst = append(cp.HostFirst, append([]int(nil), gh.first...))
	}
	return cp
}

// restore sets the guest's state from a checkpoint (checked by NewGuest
// against the run's identity; here against its sizes).
func (r *guestRun) restore(cp *GuestCheckpoint) error {
	b := r.b
	if len(cp.Scores) != len(b.F) || len(cp.ValScores) != len(b.Fval) {
		return fmt.Errorf("%w: the checkpoint's scores are for %d+%d rows, this run has %d+%d", ErrMismatch, len(cp.Scores), len(cp.ValScores), len(b.F), len(b.Fval))
	}
	copy(b.F, cp.Scores)
	copy(b.Fval, cp.ValScores)
	b.trees = append([]Tree(nil), cp.Trees...)
	b.best = cp.Kept
	b.stop.Restore(cp.Stopping)
	b.history = append([]TreeStats(nil), cp.History...)
	for h := range r.hosts {
		r.hosts[h].splits = cp.HostSplits[h]
		r.hosts[h].first = append([]int(nil), cp.HostFirst[h]...)
	}
	return nil
}

// checkResume checks the guest's start tree against this host's
// checkpoint.
func (r *hostRun) checkResume() error {
	hl, cp := r.hl, r.h.cfg.Resume
	want := 0
	if cp != nil {
		want = cp.Tree + 1
	}
	if hl.StartTree != want {
		if cp == nil {
			return fmt.Errorf("%w: the guest resumes at tree %d, this host has no checkpoint to resume from", ErrMismatch, hl.StartTree)
		}
		return fmt.Errorf("%w: the guest resumes at tree %d, this host's checkpoint is after tree %d", ErrMismatch, hl.StartTree, cp.Tree)
	}
	if cp == nil {
		return nil
	}
	if err := cp.check(); err != nil {
		return fmt.Errorf("%w: checkpoint: %v", ErrMismatch, err)
	}
	if cp.ModelID != hl.ModelID || cp.Version != hl.Version || cp.IDDigest != hl.IDDigest || cp.Train != hl.Train || cp.Split != hl.Split {
		return fmt.Errorf("%w: this host's checkpoint was taken for another model, hyper-parameters or rows", ErrMismatch)
	}
	for _, s := range cp.Splits {
		if s.Feature >= r.h.table.X.Cols {
			return fmt.Errorf("%w: the checkpoint's splits use features this table lacks", ErrMismatch)
		}
	}
	return nil
}
