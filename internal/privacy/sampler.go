package privacy

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	"sync"
)

// Sampler draws exact samples of Bernoulli(exp(−γ)), the discrete Laplace
// and the discrete Gaussian distribution (Canonne–Kamath–Steinke 2020,
// Algorithms 1–3) from uniform random integers. It is safe for concurrent
// use; samples are drawn one at a time.
type Sampler struct {
	mu  sync.Mutex
	src *bufio.Reader
	buf [8]byte
}

// NewSampler returns a Sampler reading random bytes from r, or from
// crypto/rand.Reader when r is nil. Production code passes nil; tests pass
// a reader that fails or that scripts the bytes.
func NewSampler(r io.Reader) *Sampler {
	if r == nil {
		r = rand.Reader
	}
	return &Sampler{src: bufio.NewReaderSize(r, 512)}
}

var (
	bigOne = big.NewInt(1)
	bigTwo = big.NewInt(2)
)

// maxNoise bounds the noise the int64 API returns: |z| ≤ 2^62.
var maxNoise = new(big.Int).Lsh(bigOne, 62)

// BernoulliExp returns true with probability exp(−γ) for a rational γ ≥ 0
// (Algorithm 1).
func (s *Sampler) BernoulliExp(gamma *big.Rat) (bool, error) {
	if gamma == nil || gamma.Sign() < 0 {
		return false, fmt.Errorf("%w: Bernoulli(exp(−γ)) needs γ ≥ 0", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bernoulliExp(gamma.Num(), gamma.Denom())
}

// DiscreteLaplace returns a sample Z with P[Z = z] ∝ exp(−|z|/scale) for a
// rational scale > 0 (Algorithm 2).
func (s *Sampler) DiscreteLaplace(scale *big.Rat) (int64, error) {
	if scale == nil || scale.Sign() <= 0 {
		return 0, fmt.Errorf("%w: discrete Laplace needs a scale > 0", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z, err := s.laplace(scale.Num(), scale.Denom())
	if err != nil {
		return 0, err
	}
	return noiseInt64(z)
}

// DiscreteGaussian returns a sample Z with P[Z = z] ∝ exp(−z²/(2σ²)) for a
// rational σ² > 0 (Algorithm 3).
func (s *Sampler) DiscreteGaussian(sigma2 *big.Rat) (int64, error) {
	if sigma2 == nil || sigma2.Sign() <= 0 {
		return 0, fmt.Errorf("%w: discrete Gaussian needs σ² > 0", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z, err := s.gaussian(newGaussianParams(sigma2.Num(), sigma2.Denom()))
	if err != nil {
		return 0, err
	}
	return noiseInt64(z)
}

func noiseInt64(z *big.Int) (int64, error) {
	if z.CmpAbs(maxNoise) > 0 {
		// Probability below exp(−2^62/scale): a broken parameter, not luck.
		return 0, fmt.Errorf("%w: noise sample beyond ±2^62", ErrInvalid)
	}
	return z.Int64(), nil
}

// ---- uniform integers ----

// uniform64 returns a uniform integer in [0, n) for n ≥ 1: it reads the
// fewest whole bytes that cover n−1, masks them to its bit length and
// rejects values ≥ n, so every value has the same probability.
func (s *Sampler) uniform64(n uint64) (uint64, error) {
	if n <= 1 {
		return 0, nil
	}
	nbits := bits.Len64(n - 1)
	nbytes := (nbits + 7) / 8
	mask := uint64(math.MaxUint64) >> (64 - nbits)
	for {
		if _, err := io.ReadFull(s.src, s.buf[:nbytes]); err != nil {
			return 0, fmt.Errorf("read randomness: %w", err)
		}
		var v uint64
		for _, b := range s.buf[:nbytes] {
			v = v<<8 | uint64(b)
		}
		if v &= mask; v < n {
			return v, nil
		}
	}
}

// uniform returns a uniform integer in [0, n) for n ≥ 1.
func (s *Sampler) uniform(n *big.Int) (*big.Int, error) {
	if n.IsUint64() {
		v, err := s.uniform64(n.Uint64())
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetUint64(v), nil
	}
	v, err := rand.Int(s.src, n) // unbiased: rejection over the bit length
	if err != nil {
		return nil, fmt.Errorf("read randomness: %w", err)
	}
	return v, nil
}

// bernoulliFrac returns true with probability num/(den·k), for
// 0 ≤ num ≤ den·k: a uniform integer in [0, den·k) is below num.
func (s *Sampler) bernoulliFrac(num, den *big.Int, k uint64) (bool, error) {
	if den.IsUint64() {
		if hi, lo := bits.Mul64(den.Uint64(), k); hi == 0 {
			u, err := s.uniform64(lo)
			if err != nil {
				return false, err
			}
			if !num.IsUint64() { // negative (never: callers keep 0 ≤ num) or ≥ 2^64
				return num.Sign() > 0, nil
			}
			return u < num.Uint64(), nil
		}
	}
	d := new(big.Int).Mul(den, new(big.Int).SetUint64(k))
	u, err := s.uniform(d)
	if err != nil {
		return false, err
	}
	return u.Cmp(num) < 0, nil
}

// ---- Algorithm 1: Bernoulli(exp(−γ)) ----

// bernoulliExp returns true with probability exp(−num/den), num ≥ 0,
// den > 0. For γ > 1 it needs floor(γ) successes of Bernoulli(exp(−1))
// and one of Bernoulli(exp(−(γ − floor γ))).
func (s *Sampler) bernoulliExp(num, den *big.Int) (bool, error) {
	if num.Cmp(den) <= 0 {
		return s.bernoulliExpUnit(num, den)
	}
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if q.IsUint64() {
		for i := q.Uint64(); i > 0; i-- {
			ok, err := s.bernoulliExpUnit(bigOne, bigOne)
			if !ok || err != nil {
				return false, err
			}
		}
	} else {
		for ; q.Sign() > 0; q.Sub(q, bigOne) {
			ok, err := s.bernoulliExpUnit(bigOne, bigOne)
			if !ok || err != nil {
				return false, err
			}
		}
	}
	return s.bernoulliExpUnit(r, den)
}

// bernoulliExpUnit returns true with probability exp(−γ) for
// γ = num/den ∈ [0, 1]: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until
// the first A_k = 0; the answer is whether that k is odd. (P[K > k] =
// γ^k/k!, so P[K odd] = Σ (−γ)^j/j! = exp(−γ).)
func (s *Sampler) bernoulliExpUnit(num, den *big.Int) (bool, error) {
	k := uint64(1)
	for {
		a, err := s.bernoulliFrac(num, den, k)
		if err != nil {
			return false, err
		}
		if !a {
			return k%2 == 1, nil
		}
		k++
	}
}

// ---- Algorithm 2: discrete Laplace ----

// laplace returns a sample of the discrete Laplace distribution with
// scale t/sc (t, sc ≥ 1): X = U + t·V with U uniform in [0, t) accepted
// with probability exp(−U/t) and V geometric with P[V = v] ∝ exp(−v), so X
// is geometric with P[X = x] ∝ exp(−x/t); then Y = floor(X/sc) is
// geometric with P[Y = y] ∝ exp(−y·sc/t), and a random sign (rejecting
// "−0") makes it two-sided.
func (s *Sampler) laplace(t, sc *big.Int) (*big.Int, error) {
	for {
		u, err := s.uniform(t)
		if err != nil {
			return nil, err
		}
		d, err := s.bernoulliExpUnit(u, t)
		if err != nil {
			return nil, err
		}
		if !d {
			continue
		}
		var v uint64
		for {
			a, err := s.bernoulliExpUnit(bigOne, bigOne)
			if err != nil {
				return nil, err
			}
			if !a {
				break
			}
			v++
		}
		x := new(big.Int).Mul(t, new(big.Int).SetUint64(v))
		x.Add(x, u)
		y := x
		if sc.Cmp(bigOne) != 0 {
			y = new(big.Int).Quo(x, sc)
		}
		b, err := s.uniform64(2)
		if err != nil {
			return nil, err
		}
		if b == 1 {
			if y.Sign() == 0 {
				continue
			}
			y.Neg(y)
		}
		return y, nil
	}
}

// ---- Algorithm 3: discrete Gaussian ----

// gaussianParams holds σ² = n/d and what Algorithm 3 derives from it.
type gaussianParams struct {
	n, d *big.Int
	t    *big.Int // floor(σ) + 1
	td   *big.Int // t·d
	den  *big.Int // 2·n·d·t², the denominator of γ
}

func newGaussianParams(n, d *big.Int) gaussianParams {
	// floor(sqrt(n/d)) = floor(sqrt(floor(n/d))).
	t := new(big.Int).Quo(n, d)
	t.Sqrt(t)
	t.Add(t, bigOne)
	den := new(big.Int).Mul(bigTwo, n)
	den.Mul(den, d)
	den.Mul(den, t)
	den.Mul(den, t)
	return gaussianParams{n: n, d: d, t: t, td: new(big.Int).Mul(t, d), den: den}
}

// gaussian returns a sample of the discrete Gaussian with variance
// parameter σ² = n/d: Y from the discrete Laplace with scale t =
// floor(σ)+1, accepted with probability exp(−(|Y| − σ²/t)²/(2σ²)). With
// σ² = n/d that exponent is the rational (|Y|·t·d − n)² / (2·n·d·t²).
func (s *Sampler) gaussian(p gaussianParams) (*big.Int, error) {
	num := new(big.Int)
	for {
		y, err := s.laplace(p.t, bigOne)
		if err != nil {
			return nil, err
		}
		num.Abs(y)
		num.Mul(num, p.td)
		num.Sub(num, p.n)
		num.Mul(num, num)
		c, err := s.bernoulliExp(num, p.den)
		if err != nil {
			return nil, err
		}
		if c {
			return y, nil
		}
	}
}
