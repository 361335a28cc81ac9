package secureboost

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// Binning is one party's quantile binning of its features, fitted on its
// training rows: Cuts[j] holds feature j's cut points in ascending order,
// and a value x falls in bin #{c ∈ Cuts[j] : c < x}, so bin b holds
// (Cuts[j][b−1], Cuts[j][b]]. A split "bin ≤ b" is the threshold rule
// x ≤ Cuts[j][b] on raw values, which is how models store and apply it.
type Binning struct {
	Cuts [][]float64 `json:"cuts"`
}

// FitBinning computes the binning of the columns of x with at most bins
// bins per feature. A feature with at most bins distinct values gets one
// bin per value; otherwise the cut points are the values at ranks
// ⌈k·n/bins⌉ (k = 1..bins−1) of its sorted column, without repeats and
// without the maximum (which would leave the last bin empty).
func FitBinning(x dataset.Matrix, bins int) (Binning, error) {
	if bins < 2 || bins > MaxBins {
		return Binning{}, fmt.Errorf("binning: %d bins outside 2..%d", bins, MaxBins)
	}
	if x.Rows == 0 {
		return Binning{}, errors.New("binning: no rows")
	}
	b := Binning{Cuts: make([][]float64, x.Cols)}
	col := make([]float64, x.Rows)
	for j := 0; j < x.Cols; j++ {
		for i := range col {
			col[i] = x.At(i, j)
		}
		sort.Float64s(col)
		distinct := 1
		for i := 1; i < len(col); i++ {
			if col[i] != col[i-1] {
				distinct++
			}
		}
		var cuts []float64
		if distinct <= bins {
			for i := 1; i < len(col); i++ {
				if col[i] != col[i-1] {
					cuts = append(cuts, col[i-1])
				}
			}
		} else {
			n := len(col)
			for k := 1; k < bins; k++ {
				r := (k*n + bins - 1) / bins // ⌈k·n/bins⌉, 1-based rank
				v := col[r-1]
				if v == col[n-1] {
					break
				}
				if len(cuts) == 0 || v > cuts[len(cuts)-1] {
					cuts = append(cuts, v)
				}
			}
		}
		b.Cuts[j] = cuts
	}
	return b, nil
}

// NumBins returns the number of bins of feature j.
func (b Binning) NumBins(j int) int { return len(b.Cuts[j]) + 1 }

// Bin returns the bin of value v of feature j.
func (b Binning) Bin(j int, v float64) int {
	c := b.Cuts[j]
	return sort.Search(len(c), func(k int) bool { return c[k] >= v })
}

// Validate checks that every feature's cut points are finite and strictly
// increasing, and that there are at most MaxBins bins.
func (b Binning) Validate(features int) error {
	if len(b.Cuts) != features {
		return fmt.Errorf("binning of %d features, want %d", len(b.Cuts), features)
	}
	for j, c := range b.Cuts {
		if len(c) >= MaxBins {
			return fmt.Errorf("feature %d: %d cut points", j, len(c))
		}
		for k, v := range c {
			if math.IsNaN(v) || math.IsInf(v, 0) || (k > 0 && v <= c[k-1]) {
				return fmt.Errorf("feature %d: cut points not finite and increasing", j)
			}
		}
	}
	return nil
}

// binned is a table's bins, column by column: bins[j·rows + i].
type binned struct {
	rows, cols int
	bins       []uint8
	nbins      []int // bins of each feature
	offs       []int // offset of feature j in a flat (feature, bin) histogram
	total      int   // Σ nbins
}

func (b Binning) apply(x dataset.Matrix) *binned {
	out := &binned{rows: x.Rows, cols: x.Cols, bins: make([]uint8, x.Rows*x.Cols)}
	out.nbins = make([]int, x.Cols)
	out.offs = make([]int, x.Cols)
	for j := 0; j < x.Cols; j++ {
		out.nbins[j] = b.NumBins(j)
		out.offs[j] = out.total
		out.total += out.nbins[j]
		col := out.bins[j*x.Rows : (j+1)*x.Rows]
		for i := range col {
			col[i] = uint8(b.Bin(j, x.At(i, j)))
		}
	}
	return out
}

func (m *binned) col(j int) []uint8 { return m.bins[j*m.rows : (j+1)*m.rows] }

// histLayout is the flat (feature, bin) layout of a party's histograms.
type histLayout struct {
	nbins []int
	offs  []int
	total int
}

func newHistLayout(nbins []int) histLayout {
	l := histLayout{nbins: slices.Clone(nbins), offs: make([]int, len(nbins))}
	for j, n := range nbins {
		l.offs[j] = l.total
		l.total += n
	}
	return l
}

func (m *binned) layout() histLayout { return newHistLayout(m.nbins) }
