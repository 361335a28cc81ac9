package hetero

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
// After every finished epoch each party can save its own state
// (GuestConfig.Checkpoint, HostConfig.Checkpoint): the guest its weights,
// intercept, the best weights so far, the early-stopping state and the
// epoch record; a host its weights and best weights, which never leave it.
// The guest saves before it sends EpochEnd, so a host never holds an epoch
// the guest does not. A resumed run (GuestConfig.Resume, HostConfig.Resume)
// is a new session — new CKKS keys, new mask seeds, the per-batch constants
// encrypted again — that starts at the epoch after the checkpoint: Hello
// carries that start epoch, and a host whose checkpoint is at another
// epoch, or was taken for another model, rows or hyper-parameters, refuses
// with ErrMismatch. The batch plan, schedule and early stopping depend only
// on the epoch and the restored state, so a resumed run computes what an
// uninterrupted one does, up to the fresh flooding noise (2^-FloodLog2 of
// a gradient unit) in the hosts' gradients.

// GuestCheckpoint is the guest's state after a finished epoch.
type GuestCheckpoint struct {
	ModelID  string    `json:"model_id"`
	Version  string    `json:"version"`
	IDDigest string    `json:"id_digest"`
	Train    lr.Config `json:"train"`
	// Epoch is the last finished epoch; Stop says the run ends after it.
	Epoch       int              `json:"epoch"`
	Stop        bool             `json:"stop"`
	Weights     []float64        `json:"weights"`
	Bias        float64          `json:"bias"`
	BestWeights []float64        `json:"best_weights"`
	BestBias    float64          `json:"best_bias"`
	BestEpoch   int              `json:"best_epoch"`
	Stopping    lr.StoppingState `json:"stopping"`
	History     []lr.EpochStats  `json:"history"`
}

// HostCheckpoint is a host's state after a finished epoch. It holds the
// host's weights: it is stored by the host only.
type HostCheckpoint struct {
	ModelID  string    `json:"model_id"`
	Version  string    `json:"version"`
	IDDigest string    `json:"id_digest"`
	Train    lr.Config `json:"train"`
	Epoch    int       `json:"epoch"`
	Stop     bool      `json:"stop"`
	Weights  []float64 `json:"weights"`
	Best     []float64 `json:"best"`
}

// maxCheckpointBytes bounds a checkpoint document.
const maxCheckpointBytes = 64 << 20

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

func allFinite(v []float64) bool {
	for _, x := range v {
		if !finite(x) {
			return false
		}
	}
	return true
}

func (c *GuestCheckpoint) check() error {
	n := len(c.Weights)
	switch {
	case c.Epoch < 0 || c.Epoch >= lr.MaxEpochs || c.Epoch >= c.Train.Epochs:
		return errors.New("epoch out of range")
	case n < 1 || n > dataset.MaxFeatures || len(c.BestWeights) != n:
		return errors.New("weights of the wrong length")
	case !allFinite(c.Weights) || !allFinite(c.BestWeights) || !finite(c.Bias) || !finite(c.BestBias) || !finite(c.Stopping.Best):
		return errors.New("non-finite value")
	case c.BestEpoch < -1 || c.BestEpoch > c.Epoch || len(c.History) != c.Epoch+1:
		return errors.New("best epoch or history inconsistent with the epoch")
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
	n := len(c.Weights)
	switch {
	case c.Epoch < 0 || c.Epoch >= lr.MaxEpochs || c.Epoch >= c.Train.Epochs:
		return errors.New("epoch out of range")
	case n < 1 || n > dataset.MaxFeatures || len(c.Best) != n:
		return errors.New("weights of the wrong length")
	case !allFinite(c.Weights) || !allFinite(c.Best):
		return errors.New("non-finite value")
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
