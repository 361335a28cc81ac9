package dataset

import (
	"errors"
	"fmt"
	"math"
)

// Standardisation maps each feature to (x - mean) / std. Each party fits it
// on its own training rows and applies it to all of its rows; it is part of
// that party's half of the model, so serving applies the same transform.
type Standardisation struct {
	Means []float64 `json:"means"`
	Stds  []float64 `json:"stds"`
}

// FitStandardisation computes per-column means and (population) standard
// deviations of m. A constant column gets std 1, so it maps to 0.
func FitStandardisation(m Matrix) Standardisation {
	s := Standardisation{Means: make([]float64, m.Cols), Stds: make([]float64, m.Cols)}
	if m.Rows == 0 {
		for j := range s.Stds {
			s.Stds[j] = 1
		}
		return s
	}
	for i := 0; i < m.Rows; i++ {
		for j, v := range m.Row(i) {
			s.Means[j] += v
		}
	}
	n := float64(m.Rows)
	for j := range s.Means {
		s.Means[j] /= n
	}
	for i := 0; i < m.Rows; i++ {
		for j, v := range m.Row(i) {
			d := v - s.Means[j]
			s.Stds[j] += d * d
		}
	}
	for j := range s.Stds {
		s.Stds[j] = math.Sqrt(s.Stds[j] / n)
		if s.Stds[j] < 1e-12 {
			s.Stds[j] = 1
		}
	}
	return s
}

// Validate checks that s fits cols columns and has usable values.
func (s Standardisation) Validate(cols int) error {
	if len(s.Means) != cols || len(s.Stds) != cols {
		return fmt.Errorf("standardisation has %d means and %d stds for %d features", len(s.Means), len(s.Stds), cols)
	}
	for j := range s.Means {
		if math.IsNaN(s.Means[j]) || math.IsInf(s.Means[j], 0) || !(s.Stds[j] > 0) || math.IsInf(s.Stds[j], 0) {
			return errors.New("standardisation has a non-finite mean or a non-positive std")
		}
	}
	return nil
}

// Apply returns the standardised copy of m.
func (s Standardisation) Apply(m Matrix) Matrix {
	out := m.Clone()
	for i := 0; i < out.Rows; i++ {
		r := out.Row(i)
		for j := range r {
			r[j] = (r[j] - s.Means[j]) / s.Stds[j]
		}
	}
	return out
}

// ApplyRow standardises one row in place.
func (s Standardisation) ApplyRow(x []float64) {
	for j := range x {
		x[j] = (x[j] - s.Means[j]) / s.Stds[j]
	}
}

// Standardise fits the standardisation on parts.Train and applies it to all
// three parts, returning the new parts and the fitted transform.
func Standardise(p Parts) (Parts, Standardisation) {
	st := FitStandardisation(p.Train.X)
	apply := func(t *Table) *Table {
		if t == nil {
			return nil
		}
		c := *t
		c.X = st.Apply(t.X)
		return &c
	}
	return Parts{Train: apply(p.Train), Validation: apply(p.Validation), Test: apply(p.Test)}, st
}
