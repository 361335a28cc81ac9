package serving

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// Scale is a scorecard scale: BaseScore points at odds of being good of
// BaseOdds:1, PDO points more for every doubling of those odds, clamped to
// [Min, Max] (see the package documentation for the formula).
type Scale struct {
	BaseScore float64
	BaseOdds  float64
	PDO       float64
	Min, Max  float64
}

// DefaultScale is 600 points at 50:1, 20 points to double the odds,
// 300..850.
func DefaultScale() Scale {
	return Scale{BaseScore: 600, BaseOdds: 50, PDO: 20, Min: 300, Max: 850}
}

// Validate checks the scale.
func (s Scale) Validate() error {
	for _, v := range []float64{s.BaseScore, s.BaseOdds, s.PDO, s.Min, s.Max} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("scorecard values must be finite")
		}
	}
	if s.BaseOdds <= 0 {
		return errors.New("base odds must be positive")
	}
	if s.PDO <= 0 {
		return errors.New("points to double the odds must be positive")
	}
	if s.Min > s.Max {
		return fmt.Errorf("scorecard minimum %g above maximum %g", s.Min, s.Max)
	}
	return nil
}

// Score maps a logit (log-odds of default) to points.
func (s Scale) Score(logit float64) int {
	factor := s.PDO / math.Ln2
	offset := s.BaseScore - factor*math.Log(s.BaseOdds)
	v := math.Round(offset - factor*logit)
	if math.IsNaN(v) {
		v = s.Min
	}
	return int(math.Max(s.Min, math.Min(s.Max, v)))
}

// Reason is one contribution to the logit. Positive contributions raise
// the risk of default.
type Reason struct {
	// Source is "guest" for the guest's own features, or a host's name.
	Source string `json:"source"`
	// Feature names the guest feature (as "view:feature"); empty for a
	// host's aggregate.
	Feature      string  `json:"feature,omitempty"`
	Contribution float64 `json:"contribution"`
	Direction    string  `json:"direction"` // increases_risk or decreases_risk
}

func direction(c float64) string {
	if c > 0 {
		return "increases_risk"
	}
	return "decreases_risk"
}

// guestReasons returns the k guest features with the largest |w_j·z_j|,
// for raw features x.
func guestReasons(m *hetero.GuestModel, view string, x []float64, k int) []Reason {
	type contrib struct {
		j int
		c float64
	}
	cs := make([]contrib, 0, len(m.Weights))
	for j, w := range m.Weights {
		std := m.Standardisation.Stds[j]
		if std == 0 {
			continue
		}
		c := w * (x[j] - m.Standardisation.Means[j]) / std
		if c != 0 {
			cs = append(cs, contrib{j, c})
		}
	}
	sort.SliceStable(cs, func(a, b int) bool { return math.Abs(cs[a].c) > math.Abs(cs[b].c) })
	if len(cs) > k {
		cs = cs[:k]
	}
	out := make([]Reason, len(cs))
	for i, c := range cs {
		out[i] = Reason{Source: "guest", Feature: view + ":" + m.Features[c.j], Contribution: c.c, Direction: direction(c.c)}
	}
	return out
}
