package privacy_test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"testing"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

// The statistical tests draw a fixed number of samples from crypto/rand
// and compare with the exact distribution. Every bound is at least 5
// standard errors (a false alarm has probability below 1e-6 per check)
// yet far tighter than the error of a wrong sampler: e.g. the rounded
// continuous Laplace with t = 3/2 puts 0.284 on 0, the discrete one 0.322,
// 40 standard errors apart.

const nSamples = 200_000

// dist is an exact reference distribution on the integers.
type dist struct {
	name     string
	pmf      func(x int64) float64
	variance float64
	// support beyond which the tail probability is negligible (< 1e-12).
	radius int64
}

func laplaceDist(t float64) dist {
	p := math.Exp(-1 / t)
	c := (1 - p) / (1 + p)
	r := int64(math.Ceil(t*30)) + 10
	return dist{
		name:     fmt.Sprintf("laplace(t=%v)", t),
		pmf:      func(x int64) float64 { return c * math.Pow(p, math.Abs(float64(x))) },
		variance: 2 * p / ((1 - p) * (1 - p)),
		radius:   r,
	}
}

func gaussianDist(sigma2 float64) dist {
	r := int64(math.Ceil(math.Sqrt(sigma2)*9)) + 10
	var z, m2 float64
	for x := -r; x <= r; x++ {
		w := math.Exp(-float64(x*x) / (2 * sigma2))
		z += w
		m2 += float64(x*x) * w
	}
	return dist{
		name:     fmt.Sprintf("gaussian(σ²=%v)", sigma2),
		pmf:      func(x int64) float64 { return math.Exp(-float64(x*x)/(2*sigma2)) / z },
		variance: m2 / z,
		radius:   r,
	}
}

// chi2Quantile approximates the chi-square quantile with df degrees of
// freedom at z standard normal deviations (Wilson–Hilferty).
func chi2Quantile(df int, z float64) float64 {
	k := float64(df)
	a := 2 / (9 * k)
	return k * math.Pow(1-a+z*math.Sqrt(a), 3)
}

func checkDistribution(t *testing.T, d dist, draw func() (int64, error)) {
	t.Helper()
	counts := map[int64]int{}
	var sum, sum2 float64
	for range nSamples {
		x, err := draw()
		if err != nil {
			t.Fatal(err)
		}
		counts[x]++
		sum += float64(x)
		sum2 += float64(x) * float64(x)
	}
	n := float64(nSamples)
	mean := sum / n
	variance := sum2/n - mean*mean

	if se := math.Sqrt(d.variance / n); math.Abs(mean) > 5*se {
		t.Errorf("%s: mean %.5f, want 0 ± %.5f (5 standard errors)", d.name, mean, 5*se)
	}
	if rel := math.Abs(variance-d.variance) / d.variance; rel > 0.05 {
		t.Errorf("%s: variance %.4f, want %.4f ± 5%% (off by %.2f%%)", d.name, variance, d.variance, 100*rel)
	}
	for x := int64(-2); x <= 2; x++ {
		p := d.pmf(x)
		got := float64(counts[x]) / n
		if tol := 5*math.Sqrt(p*(1-p)/n) + 1/n; math.Abs(got-p) > tol {
			t.Errorf("%s: P[X=%d] = %.5f, want %.5f ± %.5f", d.name, x, got, p, tol)
		}
	}

	// Chi-square over bins of consecutive integers, each expecting at
	// least 100 samples: bounds[i] is bin i's inclusive upper end. The
	// first bin takes the left tail, the last the right tail.
	var (
		probs  []float64
		bounds []int64
		acc    float64
	)
	for x := -d.radius; x <= d.radius; x++ {
		acc += d.pmf(x)
		if acc*n >= 100 {
			probs, bounds, acc = append(probs, acc), append(bounds, x), 0
		}
	}
	if len(probs) < 2 {
		t.Fatalf("%s: too few bins", d.name)
	}
	probs[len(probs)-1] += acc // merge the short last bin
	bounds[len(bounds)-1] = math.MaxInt64
	obs := make([]int, len(probs))
	for x, c := range counts {
		i, _ := slices.BinarySearch(bounds, x)
		obs[i] += c
	}
	var chi2, total float64
	for i, p := range probs {
		e := p * n
		chi2 += (float64(obs[i]) - e) * (float64(obs[i]) - e) / e
		total += p
	}
	if math.Abs(total-1) > 1e-9 {
		t.Fatalf("%s: reference probabilities sum to %v", d.name, total)
	}
	df := len(probs) - 1
	if q := chi2Quantile(df, 5); chi2 > q {
		t.Errorf("%s: chi-square %.1f with %d degrees of freedom, above %.1f (p ≈ 3e-7)", d.name, chi2, df, q)
	}
	t.Logf("%s: mean %.4f, variance %.4f (exact %.4f), chi-square %.1f / %d df", d.name, mean, variance, d.variance, chi2, df)
}

func TestDiscreteLaplace(t *testing.T) {
	t.Parallel()
	for _, scale := range []*big.Rat{big.NewRat(3, 2), big.NewRat(10, 1), big.NewRat(1, 3)} {
		t.Run(scale.RatString(), func(t *testing.T) {
			t.Parallel()
			f, _ := scale.Float64()
			s := privacy.NewSampler(nil)
			checkDistribution(t, laplaceDist(f), func() (int64, error) { return s.DiscreteLaplace(scale) })
		})
	}
}

func TestDiscreteGaussian(t *testing.T) {
	t.Parallel()
	for _, sigma2 := range []*big.Rat{big.NewRat(5, 2), big.NewRat(100, 1), big.NewRat(1, 4)} {
		t.Run(sigma2.RatString(), func(t *testing.T) {
			t.Parallel()
			f, _ := sigma2.Float64()
			s := privacy.NewSampler(nil)
			checkDistribution(t, gaussianDist(f), func() (int64, error) { return s.DiscreteGaussian(sigma2) })
		})
	}
}

// TestBernoulliExp checks P[true] = exp(−γ) for rational γ below, at and
// above 1, and that γ = 0 is always true.
func TestBernoulliExp(t *testing.T) {
	t.Parallel()
	s := privacy.NewSampler(nil)
	for _, g := range []*big.Rat{big.NewRat(0, 1), big.NewRat(1, 3), big.NewRat(1, 2), big.NewRat(1, 1), big.NewRat(3, 2), big.NewRat(7, 3), big.NewRat(5, 1)} {
		n := 0
		for range nSamples {
			ok, err := s.BernoulliExp(g)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				n++
			}
		}
		f, _ := g.Float64()
		p := math.Exp(-f)
		got := float64(n) / nSamples
		if tol := 5 * math.Sqrt(p*(1-p)/nSamples); math.Abs(got-p) > tol || (g.Sign() == 0 && n != nSamples) {
			t.Errorf("Bernoulli(exp(−%s)): %.5f, want %.5f ± %.5f", g.RatString(), got, p, tol)
		}
	}
}

func TestSamplerInvalid(t *testing.T) {
	s := privacy.NewSampler(nil)
	if _, err := s.DiscreteLaplace(big.NewRat(0, 1)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("scale 0: %v", err)
	}
	if _, err := s.DiscreteLaplace(nil); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("scale nil: %v", err)
	}
	if _, err := s.DiscreteGaussian(big.NewRat(-1, 2)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("σ² < 0: %v", err)
	}
	if _, err := s.BernoulliExp(big.NewRat(-1, 2)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("γ < 0: %v", err)
	}
}

// TestSamplerReadError: a failing source fails the sample.
func TestSamplerReadError(t *testing.T) {
	s := privacy.NewSampler(failingReader{})
	if _, err := s.DiscreteLaplace(big.NewRat(3, 2)); !errors.Is(err, errNoEntropy) {
		t.Errorf("Laplace on a failing source: %v", err)
	}
	if _, err := s.DiscreteGaussian(big.NewRat(1<<40, 1)); !errors.Is(err, errNoEntropy) {
		t.Errorf("Gaussian on a failing source: %v", err)
	}
}

var errNoEntropy = errors.New("no entropy")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errNoEntropy }

var _ io.Reader = failingReader{}
