package privacy_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

func TestToFixed(t *testing.T) {
	const unit = 1.0 / (1 << privacy.FracBits)
	for _, tc := range []struct {
		s    float64
		want int64
	}{
		{0, 0},
		{1, 1 << 16},
		{-2.5, -5 << 15},
		{unit, 1},
		{0.5 * unit, 1},   // half away from zero
		{-0.5 * unit, -1}, // half away from zero
		{0.49 * unit, 0},
		{1.5 * unit, 2},
		{0.1, 6554}, // 6553.6
		{-0.1, -6554},
		{math.Ldexp(1, 45), 1 << 61},
	} {
		got, err := privacy.ToFixed(tc.s)
		if err != nil || got != tc.want {
			t.Errorf("ToFixed(%v) = %d, %v; want %d", tc.s, got, err, tc.want)
		}
	}
	for _, s := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Ldexp(1, 46), -math.Ldexp(1, 46)} {
		if _, err := privacy.ToFixed(s); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("ToFixed(%v): err = %v, want ErrInvalid", s, err)
		}
	}
}

// TestFixedRoundTrip: fixed → float → fixed is the identity, and float →
// fixed → float moves a score by at most half a unit, 2^-17.
func TestFixedRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2)) // test inputs, not noise
	for range 100000 {
		v := r.Int64N(1<<46) - 1<<45
		got, err := privacy.ToFixed(privacy.FromFixed(v))
		if err != nil || got != v {
			t.Fatalf("ToFixed(FromFixed(%d)) = %d, %v", v, got, err)
		}
		s := (r.Float64()*2 - 1) * math.Pow(10, float64(r.IntN(8)-3))
		q, err := privacy.ToFixed(s)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(privacy.FromFixed(q) - s); d > math.Ldexp(1, -privacy.FracBits-1) {
			t.Fatalf("round trip of %v moved it by %v", s, d)
		}
	}
}
