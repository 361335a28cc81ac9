package secureboost

import (
	"fmt"
	"math"

	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Config holds the hyper-parameters shared by the plaintext oracle and the
// federated trainer. Both run the same algorithm on them, step for step.
type Config struct {
	// Trees is the number of boosting rounds (the most trees the model
	// can have; early stopping may keep fewer).
	Trees int `json:"trees"`
	// MaxDepth is the depth of every tree: a tree has at most 2^MaxDepth
	// leaves.
	MaxDepth int `json:"max_depth"`
	// Bins is the largest number of quantile bins per feature (each party
	// bins its own features on its training rows).
	Bins int `json:"bins"`
	// LearningRate scales every leaf weight.
	LearningRate float64 `json:"learning_rate"`
	// L2 is λ, the L2 penalty on leaf weights: w = −G/(H+λ).
	L2 float64 `json:"l2"`
	// MinChildWeight is the smallest hessian sum a child may have.
	MinChildWeight float64 `json:"min_child_weight"`
	// MinSplitGain is γ: a split must gain more than it.
	MinSplitGain float64 `json:"min_split_gain"`
	// Subsample is the fraction of training rows each tree is grown on
	// (drawn per tree from Seed; 1 uses every row).
	Subsample float64 `json:"subsample"`
	// ClassWeights weighs the log-loss of each class (lr's modes).
	ClassWeights lr.ClassWeighting `json:"class_weights"`
	// Patience is the number of trees without a validation AUC improvement
	// of at least MinDelta after which training stops; the model keeps the
	// trees up to the best one. 0 disables early stopping (every tree is
	// grown and kept).
	Patience int     `json:"patience"`
	MinDelta float64 `json:"min_delta"`
	// FirstTreeGuestOnly grows the first tree on the guest's features
	// alone, without the hosts: its gradients are those of the prior, i.e.
	// the labels themselves, and the hosts then learn nothing of it, not
	// even its instance spaces (a known mitigation, Cheng et al. §6).
	FirstTreeGuestOnly bool `json:"first_tree_guest_only"`
	// GradientBits is the fixed-point precision of the gradients and
	// hessians the histograms are summed in: g is rounded to a multiple of
	// 2^−GradientBits. Split gains are computed from these exact integer
	// sums; leaf weights from the guest's exact float sums.
	GradientBits int `json:"gradient_bits"`
	// Seed fixes the row subsampling. It is not secret.
	Seed uint64 `json:"seed"`
}

// DefaultConfig returns the hyper-parameters of the reference numbers:
// 30 trees of depth 3, 32 bins, learning rate 0.3.
func DefaultConfig() Config {
	return Config{
		Trees:          30,
		MaxDepth:       3,
		Bins:           32,
		LearningRate:   0.3,
		L2:             1,
		MinChildWeight: 1,
		Subsample:      1,
		ClassWeights:   lr.ClassWeighting{Mode: lr.Balanced},
		MinDelta:       1e-4,
		GradientBits:   20,
		Seed:           1,
	}
}

// Limits of Config.
const (
	MaxTrees        = 1000
	MaxDepth        = 8
	MaxBins         = 256
	MinGradientBits = 8
	MaxGradientBits = 24
)

// Validate checks the configuration.
func (c Config) Validate() error {
	fin := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Trees < 1 || c.Trees > MaxTrees:
		return fmt.Errorf("secureboost config: trees %d outside 1..%d", c.Trees, MaxTrees)
	case c.MaxDepth < 1 || c.MaxDepth > MaxDepth:
		return fmt.Errorf("secureboost config: depth %d outside 1..%d", c.MaxDepth, MaxDepth)
	case c.Bins < 2 || c.Bins > MaxBins:
		return fmt.Errorf("secureboost config: bins %d outside 2..%d", c.Bins, MaxBins)
	case !(c.LearningRate > 0 && c.LearningRate <= 1):
		return fmt.Errorf("secureboost config: learning rate %v outside (0, 1]", c.LearningRate)
	case !(c.L2 > 0) || !fin(c.L2) || c.L2 > 1e6:
		return fmt.Errorf("secureboost config: L2 %v outside (0, 1e6]", c.L2)
	case !(c.MinChildWeight >= 0) || !fin(c.MinChildWeight) || c.MinChildWeight > 1e9:
		return fmt.Errorf("secureboost config: min child weight %v outside [0, 1e9]", c.MinChildWeight)
	case !(c.MinSplitGain >= 0) || !fin(c.MinSplitGain):
		return fmt.Errorf("secureboost config: min split gain %v must be ≥ 0", c.MinSplitGain)
	case !(c.Subsample > 0 && c.Subsample <= 1):
		return fmt.Errorf("secureboost config: subsample %v outside (0, 1]", c.Subsample)
	case c.Patience < 0 || c.Patience > MaxTrees || !(c.MinDelta >= 0) || !fin(c.MinDelta):
		return fmt.Errorf("secureboost config: patience %d or min delta %v invalid", c.Patience, c.MinDelta)
	case c.GradientBits < MinGradientBits || c.GradientBits > MaxGradientBits:
		return fmt.Errorf("secureboost config: gradient bits %d outside %d..%d", c.GradientBits, MinGradientBits, MaxGradientBits)
	}
	switch c.ClassWeights.Mode {
	case lr.Unweighted, lr.Balanced:
	case lr.Manual:
		if _, _, err := lr.ClassWeights(c.ClassWeights, nil); err != nil {
			return fmt.Errorf("secureboost config: %w", err)
		}
	default:
		return fmt.Errorf("secureboost config: unknown class weighting %d", c.ClassWeights.Mode)
	}
	return nil
}
