package privacy

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// Kind names a noise mechanism.
type Kind string

// The mechanisms.
const (
	KindNone     Kind = "none"
	KindLaplace  Kind = "laplace"
	KindGaussian Kind = "gaussian"
)

// MaxClip bounds the clip bound B, in score units.
const MaxClip = float64(1 << 24)

// sigma2Denom is the denominator σ² is rounded up to (10^6).
var sigma2Denom = big.NewInt(1_000_000)

// Mechanism clips a partial score to [−B, B] and adds calibrated integer
// noise (see the package documentation for the formulas). The zero
// Mechanism is invalid; build one with Laplace, Gaussian or NoNoise. A
// Mechanism is immutable and safe to share.
type Mechanism struct {
	kind  Kind
	clip  float64 // B, score units
	clipQ int64   // round(B·2^FracBits)
	cost  Amount  // ε per release
	delta float64 // Gaussian only
	// Laplace: scale = a/b. Gaussian: σ² = a/b.
	a, b *big.Int
	gp   gaussianParams
}

// Laplace returns the discrete Laplace mechanism for clip bound B and
// per-release ε: noise scale t = Δ/ε with Δ = 2·round(B·2^16). It is ε-DP
// and costs eps per release.
func Laplace(clip float64, eps Amount) (Mechanism, error) {
	m, err := newMechanism(KindLaplace, clip, eps)
	if err != nil {
		return Mechanism{}, err
	}
	// t = Δ/(ε_µ/10^6) = Δ·10^6/ε_µ, exactly.
	r := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(m.Sensitivity()), big.NewInt(int64(OneEpsilon))), big.NewInt(int64(eps)))
	m.a, m.b = r.Num(), r.Denom()
	return m, nil
}

// Gaussian returns the discrete Gaussian mechanism for clip bound B and
// per-release (ε, δ): σ² = Δ²/(2ρ) with ρ = (ε/(sqrt(ε+L)+sqrt(L)))² and
// L = ln(1/δ), rounded up to a multiple of 10^-6. It is ρ-zCDP and
// (ε, δ)-DP, and costs eps per release.
func Gaussian(clip float64, eps Amount, delta float64) (Mechanism, error) {
	if !(delta > 0 && delta < 1) {
		return Mechanism{}, fmt.Errorf("%w: δ = %v, want 0 < δ < 1", ErrInvalid, delta)
	}
	m, err := newMechanism(KindGaussian, clip, eps)
	if err != nil {
		return Mechanism{}, err
	}
	m.delta = delta
	e, l := eps.Epsilon(), math.Log(1/delta)
	sqrtRho := e / (math.Sqrt(e+l) + math.Sqrt(l)) // no cancellation
	rho := sqrtRho * sqrtRho
	d := float64(m.Sensitivity())
	sigma2 := d * d / (2 * rho)
	// Round up with a margin far above the float64 error of the lines
	// above (a few ulps), so σ² is never smaller than the formula's.
	f := new(big.Float).SetPrec(128).SetFloat64(sigma2 * (1 + 1e-9))
	f.Mul(f, new(big.Float).SetInt(sigma2Denom))
	n, acc := f.Int(nil)
	if acc == big.Below {
		n.Add(n, bigOne)
	}
	r := new(big.Rat).SetFrac(n, sigma2Denom)
	m.a, m.b = r.Num(), r.Denom()
	m.gp = newGaussianParams(m.a, m.b)
	return m, nil
}

// NoNoise returns the mechanism that only clips to [−B, B]. It has no
// privacy: it is never charged and returns the clipped score exactly.
func NoNoise(clip float64) (Mechanism, error) {
	return newMechanism(KindNone, clip, 0)
}

func newMechanism(kind Kind, clip float64, eps Amount) (Mechanism, error) {
	if !(clip > 0 && clip <= MaxClip) {
		return Mechanism{}, fmt.Errorf("%w: clip bound %v, want 0 < B ≤ %v", ErrInvalid, clip, MaxClip)
	}
	q, err := ToFixed(clip)
	if err != nil {
		return Mechanism{}, err
	}
	if q < 1 {
		return Mechanism{}, fmt.Errorf("%w: clip bound %v is below the fixed-point resolution 2^-%d", ErrInvalid, clip, FracBits)
	}
	if kind != KindNone && (eps <= 0 || eps > MaxAmount) {
		return Mechanism{}, fmt.Errorf("%w: ε = %v, want 0 < ε ≤ %v", ErrInvalid, eps, MaxAmount)
	}
	return Mechanism{kind: kind, clip: clip, clipQ: q, cost: eps}, nil
}

// Kind returns the mechanism's kind ("" for the zero Mechanism).
func (m Mechanism) Kind() Kind { return m.kind }

// Clip returns the clip bound B in score units.
func (m Mechanism) Clip() float64 { return m.clip }

// Sensitivity returns Δ = 2·round(B·2^FracBits), in fixed-point units.
func (m Mechanism) Sensitivity() int64 { return 2 * m.clipQ }

// Cost returns the ε charged per release (0 for NoNoise).
func (m Mechanism) Cost() Amount { return m.cost }

// Delta returns the δ of a Gaussian mechanism (0 otherwise).
func (m Mechanism) Delta() float64 { return m.delta }

// Noisy reports whether the mechanism adds noise.
func (m Mechanism) Noisy() bool { return m.kind == KindLaplace || m.kind == KindGaussian }

// Scale returns the discrete Laplace scale t (fixed-point units), or nil.
func (m Mechanism) Scale() *big.Rat {
	if m.kind != KindLaplace {
		return nil
	}
	return new(big.Rat).SetFrac(m.a, m.b)
}

// Sigma2 returns the discrete Gaussian σ² (fixed-point units²), or nil.
func (m Mechanism) Sigma2() *big.Rat {
	if m.kind != KindGaussian {
		return nil
	}
	return new(big.Rat).SetFrac(m.a, m.b)
}

// Rho returns the zCDP parameter ρ = Δ²/(2σ²) of a Gaussian mechanism
// with its rounded σ² (at most the ρ computed from (ε, δ)), or 0.
func (m Mechanism) Rho() float64 {
	if m.kind != KindGaussian {
		return 0
	}
	d := new(big.Rat).SetInt64(m.Sensitivity())
	d.Mul(d, d)
	d.Quo(d, new(big.Rat).SetFrac(new(big.Int).Mul(bigTwo, m.a), m.b))
	f, _ := d.Float64()
	return f
}

// String identifies the mechanism and its parameters, e.g.
// "laplace/clip=262144/eps=1000000"; it is part of the release cache key,
// so a change of parameters never returns a value drawn under the old ones.
func (m Mechanism) String() string {
	s := string(m.kind) + "/clip=" + strconv.FormatInt(m.clipQ, 10)
	switch m.kind {
	case KindLaplace:
		s += "/eps=" + strconv.FormatInt(int64(m.cost), 10)
	case KindGaussian:
		s += "/eps=" + strconv.FormatInt(int64(m.cost), 10) + "/delta=" + strconv.FormatFloat(m.delta, 'g', -1, 64)
	}
	return s
}

// Apply clips score to [−B, B] and adds noise drawn from src. It returns
// the release in fixed-point units and as a score. For NoNoise the score
// is the clipped float64 itself (not rounded to fixed point).
func (m Mechanism) Apply(src *Sampler, score float64) (fixed int64, value float64, err error) {
	if m.kind == "" {
		return 0, 0, fmt.Errorf("%w: zero Mechanism", ErrInvalid)
	}
	if math.IsNaN(score) {
		return 0, 0, fmt.Errorf("%w: score is NaN", ErrInvalid)
	}
	clipped := min(max(score, -m.clip), m.clip)
	x, err := ToFixed(clipped)
	if err != nil {
		return 0, 0, err
	}
	if m.kind == KindNone {
		return x, clipped, nil
	}
	z, err := src.noise(m)
	if err != nil {
		return 0, 0, err
	}
	// |x| ≤ 2^41 and |z| ≤ 2^62: the sum fits.
	return x + z, FromFixed(x + z), nil
}

// noise draws the mechanism's noise, holding the sampler for one sample.
func (s *Sampler) noise(m Mechanism) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		z   *big.Int
		err error
	)
	switch m.kind {
	case KindLaplace:
		z, err = s.laplace(m.a, m.b)
	case KindGaussian:
		z, err = s.gaussian(m.gp)
	default:
		return 0, fmt.Errorf("%w: mechanism %q draws no noise", ErrInvalid, m.kind)
	}
	if err != nil {
		return 0, err
	}
	return noiseInt64(z)
}
