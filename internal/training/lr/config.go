// Package lr is fedrisk's plaintext logistic regression and its metrics: the
// test oracle and centralized baseline of federated training.
//
// It trains by mini-batch gradient descent with L2 regularisation, a
// learning-rate schedule, class weights for imbalanced labels, early
// stopping on validation loss, and either the exact sigmoid or its first-
// order Taylor approximation 0.5 + u/4 (the one the federated path can
// evaluate under encryption). It also computes the metrics: exact AUC with
// ties, KS and log-loss.
//
// Its role in fedrisk is the oracle: the centralized baseline trained on
// the joined data, against which the federated trainer is tested. It is
// never on the federated path. The federated trainer
// (internal/training/hetero) shares the pieces that make both compute the
// same thing: [Config], the batch [Plan], the [Schedule], [ClassWeights] and
// the [EarlyStopping] rule.
//
// # The algorithm
//
// Rows are split once into fixed batches by a seeded permutation ([NewPlan]);
// each epoch visits the batches in a seeded order. On a batch B of b rows,
// with u_i = x_i·w + bias, r_i = c_i·(s(u_i) − y_i) where c_i is the class
// weight of y_i and s is the chosen sigmoid, the step is
//
//	w    ← w    − η_e · ( (1/b)·Σ r_i·x_i + λ·w )
//	bias ← bias − η_e · (1/b)·Σ r_i
//
// with η_e the schedule's rate in epoch e. After each epoch the validation
// log-loss (exact sigmoid, unweighted) decides early stopping; the weights
// of the best epoch are kept.
package lr

import (
	"errors"
	"fmt"
	"math"
)

// Sigmoid selects the link used in the gradient.
type Sigmoid uint8

const (
	// SigmoidTaylor is 0.5 + u/4, the first-order Taylor expansion of the
	// sigmoid at 0. It is linear, so the federated path can evaluate it on
	// additively shared or encrypted scores. It does not saturate, which
	// costs some accuracy (≈ 0.007 AUC on the credit data).
	SigmoidTaylor Sigmoid = 1
	// SigmoidExact is 1/(1+exp(−u)).
	SigmoidExact Sigmoid = 2
)

func (s Sigmoid) String() string {
	switch s {
	case SigmoidTaylor:
		return "taylor"
	case SigmoidExact:
		return "exact"
	}
	return fmt.Sprintf("sigmoid-%d", uint8(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s Sigmoid) MarshalText() ([]byte, error) {
	if s == 0 {
		return nil, nil // unset
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Sigmoid) UnmarshalText(b []byte) error {
	switch string(b) {
	case "":
		*s = 0
	case "taylor":
		*s = SigmoidTaylor
	case "exact":
		*s = SigmoidExact
	default:
		return fmt.Errorf("unknown sigmoid %.32q", b)
	}
	return nil
}

// Eval returns s(u).
func (s Sigmoid) Eval(u float64) float64 {
	if s == SigmoidTaylor {
		return 0.5 + u/4
	}
	return Logistic(u)
}

// Logistic is the exact sigmoid, stable for large |u|.
func Logistic(u float64) float64 {
	if u >= 0 {
		return 1 / (1 + math.Exp(-u))
	}
	e := math.Exp(u)
	return e / (1 + e)
}

// ScheduleKind is the shape of the learning-rate schedule.
type ScheduleKind uint8

const (
	// Constant keeps the rate.
	Constant ScheduleKind = 1
	// InverseTime uses η_e = η / (1 + Decay·e).
	InverseTime ScheduleKind = 2
	// Exponential uses η_e = η · Decay^e.
	Exponential ScheduleKind = 3
)

func (k ScheduleKind) String() string {
	switch k {
	case Constant:
		return "constant"
	case InverseTime:
		return "inverse-time"
	case Exponential:
		return "exponential"
	}
	return fmt.Sprintf("schedule-%d", uint8(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k ScheduleKind) MarshalText() ([]byte, error) {
	if k == 0 {
		return nil, nil // unset
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *ScheduleKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "":
		*k = 0
	case "constant":
		*k = Constant
	case "inverse-time":
		*k = InverseTime
	case "exponential":
		*k = Exponential
	default:
		return fmt.Errorf("unknown schedule %.32q", b)
	}
	return nil
}

// Schedule is the learning-rate schedule, per epoch (epochs count from 0).
type Schedule struct {
	Kind  ScheduleKind `json:"kind"`
	Decay float64      `json:"decay,omitempty"`
}

// Rate returns the learning rate of epoch e given the base rate.
func (s Schedule) Rate(base float64, e int) float64 {
	switch s.Kind {
	case InverseTime:
		return base / (1 + s.Decay*float64(e))
	case Exponential:
		return base * math.Pow(s.Decay, float64(e))
	}
	return base
}

// ClassWeightMode selects how rows are weighted by label.
type ClassWeightMode uint8

const (
	// Unweighted gives every row weight 1.
	Unweighted ClassWeightMode = 1
	// Balanced gives class k the weight n / (2·n_k) on the training rows,
	// so both classes weigh the same in total.
	Balanced ClassWeightMode = 2
	// Manual uses the weights given.
	Manual ClassWeightMode = 3
)

func (m ClassWeightMode) String() string {
	switch m {
	case Unweighted:
		return "none"
	case Balanced:
		return "balanced"
	case Manual:
		return "manual"
	}
	return fmt.Sprintf("class-weights-%d", uint8(m))
}

// MarshalText implements encoding.TextMarshaler.
func (m ClassWeightMode) MarshalText() ([]byte, error) {
	if m == 0 {
		return nil, nil // unset
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *ClassWeightMode) UnmarshalText(b []byte) error {
	switch string(b) {
	case "":
		*m = 0
	case "none":
		*m = Unweighted
	case "balanced":
		*m = Balanced
	case "manual":
		*m = Manual
	default:
		return fmt.Errorf("unknown class weighting %.32q", b)
	}
	return nil
}

// ClassWeighting configures class weights.
type ClassWeighting struct {
	Mode     ClassWeightMode `json:"mode"`
	Negative float64         `json:"negative,omitempty"` // Manual only
	Positive float64         `json:"positive,omitempty"` // Manual only
}

// MaxClassWeight bounds a class weight (the federated path sizes its
// fixed-point encoding for it).
const MaxClassWeight = 16

// ClassWeights returns the weights (negative, positive) for labels y.
func ClassWeights(cw ClassWeighting, y []float64) (neg, pos float64, err error) {
	switch cw.Mode {
	case Unweighted:
		return 1, 1, nil
	case Manual:
		neg, pos = cw.Negative, cw.Positive
	case Balanced:
		var np float64
		for _, v := range y {
			np += v
		}
		n := float64(len(y))
		if np == 0 || np == n {
			return 0, 0, errors.New("class weights: the training rows have a single class")
		}
		neg, pos = n/(2*(n-np)), n/(2*np)
	default:
		return 0, 0, fmt.Errorf("class weights: unknown mode %d", cw.Mode)
	}
	if !(neg > 0 && neg <= MaxClassWeight && pos > 0 && pos <= MaxClassWeight) {
		return 0, 0, fmt.Errorf("class weights %v, %v outside (0, %d]", neg, pos, MaxClassWeight)
	}
	return neg, pos, nil
}

// Config holds the hyper-parameters shared by the oracle and the federated
// trainer.
type Config struct {
	Epochs       int            `json:"epochs"`
	BatchSize    int            `json:"batch_size"`
	LearningRate float64        `json:"learning_rate"`
	Schedule     Schedule       `json:"schedule"`
	L2           float64        `json:"l2"`
	Sigmoid      Sigmoid        `json:"sigmoid"`
	ClassWeights ClassWeighting `json:"class_weights"`
	// Patience is the number of epochs without a validation-loss
	// improvement of at least MinDelta after which training stops; 0
	// disables early stopping (all epochs run, the last weights are kept).
	Patience int     `json:"patience"`
	MinDelta float64 `json:"min_delta"`
	// Seed fixes the batch plan (the partition into batches and each
	// epoch's batch order).
	Seed uint64 `json:"seed"`
}

// DefaultConfig returns the hyper-parameters used for the credit data.
func DefaultConfig() Config {
	return Config{
		Epochs:       20,
		BatchSize:    512,
		LearningRate: 0.15,
		Schedule:     Schedule{Kind: InverseTime, Decay: 0.05},
		L2:           1e-3,
		Sigmoid:      SigmoidTaylor,
		ClassWeights: ClassWeighting{Mode: Balanced},
		Patience:     3,
		MinDelta:     1e-4,
		Seed:         1,
	}
}

// Limits of Config.
const (
	MaxEpochs    = 10_000
	MaxBatchSize = 1 << 16
)

// Validate checks the configuration.
func (c Config) Validate() error {
	fin := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Epochs < 1 || c.Epochs > MaxEpochs:
		return fmt.Errorf("config: epochs %d outside 1..%d", c.Epochs, MaxEpochs)
	case c.BatchSize < 1 || c.BatchSize > MaxBatchSize:
		return fmt.Errorf("config: batch size %d outside 1..%d", c.BatchSize, MaxBatchSize)
	case !(c.LearningRate > 0) || !fin(c.LearningRate) || c.LearningRate > 100:
		return fmt.Errorf("config: learning rate %v outside (0, 100]", c.LearningRate)
	case !(c.L2 >= 0) || !fin(c.L2) || c.L2 > 100:
		return fmt.Errorf("config: L2 %v outside [0, 100]", c.L2)
	case c.Sigmoid != SigmoidTaylor && c.Sigmoid != SigmoidExact:
		return fmt.Errorf("config: unknown sigmoid %d", c.Sigmoid)
	case c.Patience < 0 || c.Patience > MaxEpochs || !(c.MinDelta >= 0) || !fin(c.MinDelta):
		return fmt.Errorf("config: patience %d or min delta %v invalid", c.Patience, c.MinDelta)
	}
	switch c.Schedule.Kind {
	case Constant:
	case InverseTime:
		if !(c.Schedule.Decay >= 0) || !fin(c.Schedule.Decay) {
			return fmt.Errorf("config: inverse-time decay %v must be ≥ 0", c.Schedule.Decay)
		}
	case Exponential:
		if !(c.Schedule.Decay > 0 && c.Schedule.Decay <= 1) {
			return fmt.Errorf("config: exponential decay %v outside (0, 1]", c.Schedule.Decay)
		}
	default:
		return fmt.Errorf("config: unknown schedule %d", c.Schedule.Kind)
	}
	switch c.ClassWeights.Mode {
	case Unweighted, Balanced:
	case Manual:
		if _, _, err := ClassWeights(c.ClassWeights, nil); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	default:
		return fmt.Errorf("config: unknown class weighting %d", c.ClassWeights.Mode)
	}
	return nil
}
