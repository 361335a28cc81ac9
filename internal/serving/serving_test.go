package serving

import (
	"math"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

func TestScale(t *testing.T) {
	s := DefaultScale()
	base := -math.Log(50) // odds of good 50:1
	tests := []struct {
		name  string
		logit float64
		want  int
	}{
		{"base odds", base, 600},
		{"odds doubled", base - math.Ln2, 620},
		{"odds halved", base + math.Ln2, 580},
		{"clamped low", 40, 300},
		{"clamped high", -40, 850},
		{"nan", math.NaN(), 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Score(tt.logit); got != tt.want {
				t.Errorf("Score(%v) = %d, want %d", tt.logit, got, tt.want)
			}
		})
	}
	for _, bad := range []Scale{{BaseScore: 600, BaseOdds: 0, PDO: 20, Min: 300, Max: 850}, {BaseScore: 600, BaseOdds: 50, PDO: -1, Min: 300, Max: 850},
		{BaseScore: 600, BaseOdds: 50, PDO: 20, Min: 900, Max: 850}, {BaseScore: math.Inf(1), BaseOdds: 50, PDO: 20, Min: 300, Max: 850}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestGuestReasons(t *testing.T) {
	m := &hetero.GuestModel{ModelID: "m", Version: "1", Features: []string{"a", "b", "c", "d"},
		Weights: []float64{0.5, -2, 1, 0}, Bias: -1,
		Standardisation: dataset.Standardisation{Means: []float64{1, 0, 2, 0}, Stds: []float64{2, 1, 0.5, 1}}}
	x := []float64{5, 0.25, 1, 9} // z = 2, 0.25, -2, 9 → contributions 1, -0.5, -2, 0
	rs := guestReasons(m, "v", x, 2)
	if len(rs) != 2 || rs[0].Feature != "v:c" || rs[0].Contribution != -2 || rs[0].Direction != "decreases_risk" ||
		rs[1].Feature != "v:a" || rs[1].Contribution != 1 || rs[1].Direction != "increases_risk" {
		t.Fatalf("reasons %+v", rs)
	}
	all := guestReasons(m, "v", x, 10)
	sum := m.Bias
	for _, r := range all {
		sum += r.Contribution
	}
	p, _ := m.PartialScore(x)
	if len(all) != 3 || math.Abs(sum-p) > 1e-12 {
		t.Errorf("contributions %+v add to %v, partial score %v", all, sum, p)
	}
}

func TestSnapshot(t *testing.T) {
	at := time.Unix(1700000000, 0)
	vec := func(v float64, t time.Time) features.Vector {
		return features.Vector{Features: []string{"x0", "x1"}, Values: []features.Value{features.Float64Value(v), features.Float64Value(1)},
			Present: []bool{true, true}, Statuses: []features.Status{features.StatusPresent, features.StatusPresent}, EventTimes: []time.Time{t, t}}
	}
	a := Snapshot(vec(0.5, at))
	if a != Snapshot(vec(0.5, at)) || len(a) != 32 {
		t.Fatalf("snapshot not deterministic: %s", a)
	}
	if a == Snapshot(vec(0.25, at)) {
		t.Error("another value, same snapshot")
	}
	if a == Snapshot(vec(0.5, at.Add(time.Second))) {
		t.Error("another event time, same snapshot")
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"credit-risk", "1", "stable", "a.b_c"} {
		if !validName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", string(make([]byte, 129))} {
		if validName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
