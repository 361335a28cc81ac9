package secureboost

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Model is a plaintext gradient-boosted tree model over one party's
// features: what the plaintext oracle trains on the joined data, and the
// reference the federated model's scores are compared with.
type Model struct {
	Features []string `json:"features"`
	Binning  Binning  `json:"binning"`
	Base     float64  `json:"base"`
	Trees    []Tree   `json:"trees"`
	// Importance per feature, over the kept trees' splits.
	Importance []Importance `json:"importance"`
	History    []TreeStats  `json:"history"`
}

// Logit returns the model's log-odds for raw features x.
func (m *Model) Logit(x []float64) (float64, error) {
	if len(x) != len(m.Features) {
		return 0, fmt.Errorf("secureboost: %d features, model has %d", len(x), len(m.Features))
	}
	s := m.Base
	route := func(n *Node) (bool, error) { return x[n.Feature] <= n.Threshold, nil }
	for k := range m.Trees {
		leaf, err := m.Trees[k].Leaf(route)
		if err != nil {
			return 0, err
		}
		s += m.Trees[k].Nodes[leaf].Value
	}
	return s, nil
}

// Logits scores every row of x.
func (m *Model) Logits(x dataset.Matrix) ([]float64, error) {
	out := make([]float64, x.Rows)
	for i := range out {
		v, err := m.Logit(x.Row(i))
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Train fits the plaintext model on train (labelled) and early-stops on
// val, with the algorithm the federated guest runs: it is the oracle of
// the federated trainer and the centralized baseline, never part of the
// federated path.
func Train(ctx context.Context, train, val *dataset.Table, cfg Config) (*Model, error) {
	if train == nil {
		return nil, errors.New("secureboost: training needs labelled rows")
	}
	return trainOracle(ctx, train, val, cfg, train.X.Cols)
}

// trainOracle is Train where only the first guestCols columns are the
// guest's (Config.FirstTreeGuestOnly).
func trainOracle(ctx context.Context, train, val *dataset.Table, cfg Config, guestCols int) (*Model, error) {
	if train == nil || !train.HasLabels() || train.Len() == 0 {
		return nil, errors.New("secureboost: training needs labelled rows")
	}
	if val == nil {
		val = train.Rows(nil)
	}
	bins, err := FitBinning(train.X, cfg.Bins)
	if err != nil {
		return nil, err
	}
	b, err := newBooster(cfg, bins, train, val)
	if err != nil {
		return nil, err
	}
	b.guestOnlyCols = guestCols
	for t := 0; t < cfg.Trees; t++ {
		st, err := b.growTree(ctx, t, nil)
		if err != nil {
			return nil, err
		}
		b.history = append(b.history, st)
		if _, stop := b.observe(t, st); stop {
			break
		}
	}
	m := &Model{Features: train.Features, Binning: bins, Base: b.base, Trees: b.trees[:b.best], History: b.history}
	m.Importance = make([]Importance, len(train.Features))
	for j, name := range train.Features {
		m.Importance[j].Name = name
	}
	for _, t := range m.Trees {
		for _, n := range t.Nodes {
			if !n.Leaf {
				m.Importance[n.Feature].Gain += n.Gain
				m.Importance[n.Feature].Splits++
			}
		}
	}
	return m, nil
}

// Join returns the guest's table with the hosts' feature columns appended
// (aligned rows): the pooled data of the centralized baseline.
func Join(guest *dataset.Table, hosts ...*dataset.Table) (*dataset.Table, error) {
	out := &dataset.Table{IDs: guest.IDs, Labels: guest.Labels, Features: append([]string(nil), guest.Features...), X: guest.X}
	for h, t := range hosts {
		if t.Len() != guest.Len() {
			return nil, fmt.Errorf("secureboost: host %d has %d rows, the guest %d", h, t.Len(), guest.Len())
		}
		for i := range t.IDs {
			if t.IDs[i] != guest.IDs[i] {
				return nil, fmt.Errorf("secureboost: host %d's rows are not aligned with the guest's", h)
			}
		}
		for _, f := range t.Features {
			out.Features = append(out.Features, fmt.Sprintf("host%d.%s", h, f))
		}
		out.X = dataset.HStack(out.X, t.X)
	}
	return out, nil
}

// Centralized trains the plaintext model on the guest's and hosts'
// aligned tables joined in the clear, with the federated run's split and
// hyper-parameters, and returns it with its test metrics: the accuracy
// baseline of benchmarks, which hold every party's data.
func Centralized(ctx context.Context, guest *dataset.Table, hosts []*dataset.Table, split dataset.Split, cfg Config) (*Model, lr.Metrics, error) {
	joined, err := Join(guest, hosts...)
	if err != nil {
		return nil, lr.Metrics{}, err
	}
	if err := split.Validate(); err != nil {
		return nil, lr.Metrics{}, err
	}
	parts := split.Apply(joined)
	m, err := trainOracle(ctx, parts.Train, parts.Validation, cfg, guest.X.Cols)
	if err != nil {
		return nil, lr.Metrics{}, err
	}
	u, err := m.Logits(parts.Test.X)
	if err != nil {
		return nil, lr.Metrics{}, err
	}
	return m, lr.Evaluate(u, parts.Test.Labels), nil
}
