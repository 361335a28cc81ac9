package privacy_test

import (
	"errors"
	"math"
	"math/big"
	"testing"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

func TestLaplaceCalibration(t *testing.T) {
	for _, tc := range []struct {
		clip      float64
		eps       privacy.Amount
		wantSens  int64
		wantScale *big.Rat
	}{
		{1, privacy.OneEpsilon, 131072, big.NewRat(131072, 1)},
		{0.5, 300_000, 65536, big.NewRat(65536*10, 3)}, // Δ/0.3
		{4, 2 * privacy.OneEpsilon, 524288, big.NewRat(262144, 1)},
	} {
		m, err := privacy.Laplace(tc.clip, tc.eps)
		if err != nil {
			t.Fatal(err)
		}
		if m.Sensitivity() != tc.wantSens || m.Scale().Cmp(tc.wantScale) != 0 || m.Cost() != tc.eps || m.Kind() != privacy.KindLaplace || m.Sigma2() != nil {
			t.Errorf("Laplace(%v, %v): Δ %d, t %s, cost %v", tc.clip, tc.eps, m.Sensitivity(), m.Scale().RatString(), m.Cost())
		}
		// ε = Δ/t exactly.
		eps := new(big.Rat).Quo(new(big.Rat).SetInt64(m.Sensitivity()), m.Scale())
		if eps.Cmp(big.NewRat(int64(tc.eps), int64(privacy.OneEpsilon))) != 0 {
			t.Errorf("Δ/t = %s, want ε = %v", eps.RatString(), tc.eps)
		}
	}
}

func TestGaussianCalibration(t *testing.T) {
	for _, tc := range []struct {
		clip  float64
		eps   privacy.Amount
		delta float64
	}{
		{1, privacy.OneEpsilon, 1e-9},
		{2, 500_000, 1e-6},
		{0.25, 3 * privacy.OneEpsilon, 1e-12},
		{1, 10_000, 1e-9},
	} {
		m, err := privacy.Gaussian(tc.clip, tc.eps, tc.delta)
		if err != nil {
			t.Fatal(err)
		}
		eps, l := tc.eps.Epsilon(), math.Log(1/tc.delta)
		// ρ from the (ε, δ) formula; σ² rounded up from Δ²/(2ρ).
		rho := math.Pow(math.Sqrt(eps+l)-math.Sqrt(l), 2)
		d := float64(m.Sensitivity())
		exact := d * d / (2 * rho)
		s2, _ := m.Sigma2().Float64()
		if s2 < exact*(1-1e-12) || s2 > exact*(1+1e-8)+1e-6 {
			t.Errorf("Gaussian(%v, %v, %v): σ² = %v, want %v rounded up", tc.clip, tc.eps, tc.delta, s2, exact)
		}
		if m.Sigma2().Denom().Cmp(big.NewInt(1_000_000)) > 0 {
			t.Errorf("σ² denominator %v", m.Sigma2().Denom())
		}
		// The mechanism's ρ (from its rounded σ²) converts back to at most ε.
		r := m.Rho()
		if got := r + 2*math.Sqrt(r*l); got > eps*(1+1e-9) || got < eps*(1-1e-6) {
			t.Errorf("Gaussian(%v, %v, %v): ρ = %v gives ε = %v", tc.clip, tc.eps, tc.delta, r, got)
		}
		if m.Delta() != tc.delta || m.Cost() != tc.eps || m.Scale() != nil {
			t.Errorf("Gaussian accessors: δ %v, cost %v", m.Delta(), m.Cost())
		}
	}
}

func TestMechanismInvalid(t *testing.T) {
	for name, f := range map[string]func() (privacy.Mechanism, error){
		"clip 0":            func() (privacy.Mechanism, error) { return privacy.Laplace(0, privacy.OneEpsilon) },
		"clip NaN":          func() (privacy.Mechanism, error) { return privacy.Laplace(math.NaN(), privacy.OneEpsilon) },
		"clip inf":          func() (privacy.Mechanism, error) { return privacy.NoNoise(math.Inf(1)) },
		"clip huge":         func() (privacy.Mechanism, error) { return privacy.NoNoise(privacy.MaxClip * 2) },
		"clip below unit":   func() (privacy.Mechanism, error) { return privacy.Laplace(1e-6, privacy.OneEpsilon) },
		"eps 0":             func() (privacy.Mechanism, error) { return privacy.Laplace(1, 0) },
		"eps negative":      func() (privacy.Mechanism, error) { return privacy.Gaussian(1, -1, 1e-9) },
		"delta 0":           func() (privacy.Mechanism, error) { return privacy.Gaussian(1, privacy.OneEpsilon, 0) },
		"delta 1":           func() (privacy.Mechanism, error) { return privacy.Gaussian(1, privacy.OneEpsilon, 1) },
		"delta NaN":         func() (privacy.Mechanism, error) { return privacy.Gaussian(1, privacy.OneEpsilon, math.NaN()) },
		"eps above maximum": func() (privacy.Mechanism, error) { return privacy.Laplace(1, privacy.MaxAmount+1) },
	} {
		if _, err := f(); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := (privacy.Mechanism{}).Apply(privacy.NewSampler(nil), 1); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("zero Mechanism: %v", err)
	}
}

func TestEpsilonAmount(t *testing.T) {
	for eps, want := range map[float64]privacy.Amount{0: 0, 1: 1_000_000, 0.25: 250_000, 1e-6: 1, 0.1234564: 123_456, 0.1234565: 123_457} {
		if got, err := privacy.EpsilonAmount(eps); err != nil || got != want {
			t.Errorf("EpsilonAmount(%v) = %d, %v; want %d", eps, got, err, want)
		}
	}
	for _, eps := range []float64{-1, math.NaN(), math.Inf(1), 1e13} {
		if _, err := privacy.EpsilonAmount(eps); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("EpsilonAmount(%v): %v, want ErrInvalid", eps, err)
		}
	}
	if s := privacy.Amount(250_000).String(); s != "0.25ε" {
		t.Errorf("String = %q", s)
	}
}

// TestNoNoiseReturnsClippedScore: with noise off a release is the clipped
// score itself, bit for bit (the serving layer compares it with the
// plaintext model at 1e-6).
func TestNoNoiseReturnsClippedScore(t *testing.T) {
	m, err := privacy.NoNoise(2)
	if err != nil {
		t.Fatal(err)
	}
	src := privacy.NewSampler(failingReader{}) // NoNoise never reads randomness
	for score, want := range map[float64]float64{
		0.123456789:   0.123456789,
		-1.9999999999: -1.9999999999,
		2:             2,
		5:             2,
		-7:            -2,
		math.Inf(1):   2,
		math.Inf(-1):  -2,
		1e-300:        1e-300,
	} {
		fixed, got, err := m.Apply(src, score)
		if err != nil || got != want {
			t.Errorf("NoNoise(2).Apply(%v) = %v, %v; want %v", score, got, err, want)
		}
		if q, _ := privacy.ToFixed(want); fixed != q {
			t.Errorf("NoNoise(2).Apply(%v): fixed %d, want %d", score, fixed, q)
		}
	}
	if _, _, err := m.Apply(src, math.NaN()); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("NaN: %v", err)
	}
	if m.Noisy() || m.Cost() != 0 || m.Kind() != privacy.KindNone {
		t.Errorf("NoNoise: noisy %v, cost %v", m.Noisy(), m.Cost())
	}
}

// TestClipping: a noisy release is centred on the clipped score, not on
// the raw one: the mean of many releases of ±50 with B = 1 is ±1 within 5
// standard errors.
func TestClipping(t *testing.T) {
	lap, err := privacy.Laplace(1, 20*privacy.OneEpsilon) // t = 6553.6 units
	if err != nil {
		t.Fatal(err)
	}
	gau, err := privacy.Gaussian(1, 20*privacy.OneEpsilon, 1e-9)
	if err != nil {
		t.Fatal(err)
	}
	src := privacy.NewSampler(nil)
	const n = 20_000
	for _, m := range []privacy.Mechanism{lap, gau} {
		var variance float64
		if s := m.Scale(); s != nil {
			f, _ := s.Float64()
			variance = 2 * f * f // continuous bound, ≥ the discrete one
		} else {
			variance, _ = m.Sigma2().Float64()
		}
		se := math.Sqrt(variance/n) / (1 << privacy.FracBits)
		for _, score := range []float64{50, -50, 0.5} {
			want := max(-1, min(1, score))
			var sum float64
			for range n {
				fixed, v, err := m.Apply(src, score)
				if err != nil {
					t.Fatal(err)
				}
				if v != privacy.FromFixed(fixed) {
					t.Fatalf("value %v is not fixed %d", v, fixed)
				}
				sum += v
			}
			if mean := sum / n; math.Abs(mean-want) > 5*se {
				t.Errorf("%v: mean release of %v = %.5f, want %v ± %.5f", m, score, mean, want, 5*se)
			}
		}
	}
}

func TestMechanismString(t *testing.T) {
	a, _ := privacy.Laplace(1, privacy.OneEpsilon)
	b, _ := privacy.Laplace(1, 2*privacy.OneEpsilon)
	c, _ := privacy.Laplace(2, privacy.OneEpsilon)
	d, _ := privacy.Gaussian(1, privacy.OneEpsilon, 1e-9)
	e, _ := privacy.Gaussian(1, privacy.OneEpsilon, 1e-6)
	f, _ := privacy.NoNoise(1)
	seen := map[string]bool{}
	for _, m := range []privacy.Mechanism{a, b, c, d, e, f} {
		if seen[m.String()] {
			t.Errorf("two mechanisms named %q", m)
		}
		seen[m.String()] = true
	}
	if a.String() != "laplace/clip=65536/eps=1000000" {
		t.Errorf("String = %q", a)
	}
}
