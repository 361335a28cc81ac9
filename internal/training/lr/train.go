package lr

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// Data is a labelled design matrix.
type Data struct {
	X dataset.Matrix
	Y []float64
}

// Model is a logistic-regression model on standardised features.
type Model struct {
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
}

// Logit returns x·w + bias.
func (m Model) Logit(x []float64) float64 {
	s := m.Bias
	for j, w := range m.Weights {
		s += w * x[j]
	}
	return s
}

// Logits returns the logits of every row of x.
func (m Model) Logits(x dataset.Matrix) []float64 {
	out := make([]float64, x.Rows)
	for i := range out {
		out[i] = m.Logit(x.Row(i))
	}
	return out
}

// EpochStats records one epoch.
type EpochStats struct {
	Epoch        int     `json:"epoch"`
	LearningRate float64 `json:"learning_rate"`
	Validation   Metrics `json:"validation"`
}

// History is the record of a training run.
type History struct {
	Epochs    []EpochStats `json:"epochs"`
	BestEpoch int          `json:"best_epoch"` // epoch whose weights were kept
	Stopped   bool         `json:"stopped"`    // early stopping ended the run
}

// Train fits a model on train, using val (may have no rows) for early
// stopping and the per-epoch record. Weights start at zero.
func Train(ctx context.Context, train Data, val Data, cfg Config) (Model, History, error) {
	if err := cfg.Validate(); err != nil {
		return Model{}, History{}, err
	}
	n, p := train.X.Rows, train.X.Cols
	if n == 0 || len(train.Y) != n {
		return Model{}, History{}, errors.New("train: no rows or labels do not match rows")
	}
	neg, pos, err := ClassWeights(cfg.ClassWeights, train.Y)
	if err != nil {
		return Model{}, History{}, err
	}
	plan, err := NewPlan(n, cfg.BatchSize, cfg.Seed)
	if err != nil {
		return Model{}, History{}, err
	}
	m := Model{Weights: make([]float64, p)}
	best := Model{Weights: make([]float64, p)}
	stop := NewEarlyStopping(cfg)
	hist := History{BestEpoch: -1}
	grad := make([]float64, p)
	for e := 0; e < cfg.Epochs; e++ {
		if err := ctx.Err(); err != nil {
			return Model{}, History{}, fmt.Errorf("train: %w", err)
		}
		eta := cfg.Schedule.Rate(cfg.LearningRate, e)
		for _, k := range plan.Order(e) {
			rows := plan.Batch(k)
			clear(grad)
			var gb float64
			for _, i := range rows {
				x := train.X.Row(i)
				c := neg
				if train.Y[i] == 1 {
					c = pos
				}
				r := c * (cfg.Sigmoid.Eval(m.Logit(x)) - train.Y[i])
				for j, v := range x {
					grad[j] += r * v
				}
				gb += r
			}
			b := float64(len(rows))
			for j := range m.Weights {
				m.Weights[j] -= eta * (grad[j]/b + cfg.L2*m.Weights[j])
			}
			m.Bias -= eta * gb / b
		}
		st := EpochStats{Epoch: e, LearningRate: eta}
		if val.X.Rows > 0 {
			st.Validation = Evaluate(m.Logits(val.X), val.Y)
		}
		hist.Epochs = append(hist.Epochs, st)
		if math.IsNaN(m.Bias) || math.IsInf(m.Bias, 0) {
			return Model{}, hist, fmt.Errorf("train: diverged in epoch %d (lower the learning rate)", e)
		}
		if val.X.Rows == 0 || !stop.Enabled() {
			continue
		}
		isBest, halt := stop.Observe(e, st.Validation.LogLoss)
		if isBest {
			copy(best.Weights, m.Weights)
			best.Bias = m.Bias
			hist.BestEpoch = e
		}
		if halt {
			hist.Stopped = true
			break
		}
	}
	if val.X.Rows == 0 || !stop.Enabled() {
		hist.BestEpoch = len(hist.Epochs) - 1
		return m, hist, nil
	}
	return best, hist, nil
}
