package privacy_test

import (
	"math/big"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

// BenchmarkDiscreteLaplace: one sample per iteration from crypto/rand, at
// a small non-integer scale and at the scale of a release with B = 1,
// ε = 1 (t = Δ/ε = 131072 fixed-point units) and ε = 0.1.
func BenchmarkDiscreteLaplace(b *testing.B) {
	for _, tc := range []struct {
		name  string
		scale *big.Rat
	}{
		{"t=3/2", big.NewRat(3, 2)},
		{"B=1,eps=1", big.NewRat(131072, 1)},
		{"B=1,eps=0.1", big.NewRat(1310720, 1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := privacy.NewSampler(nil)
			for b.Loop() {
				if _, err := s.DiscreteLaplace(tc.scale); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiscreteGaussian: one sample per iteration, at σ² = 5/2 and at
// the σ² of a release with B = 1, ε = 1, δ = 1e-9 (σ ≈ 4.8e5 units).
func BenchmarkDiscreteGaussian(b *testing.B) {
	m, err := privacy.Gaussian(1, privacy.OneEpsilon, 1e-9)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		sigma2 *big.Rat
	}{
		{"sigma2=5/2", big.NewRat(5, 2)},
		{"B=1,eps=1,delta=1e-9", m.Sigma2()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := privacy.NewSampler(nil)
			for b.Loop() {
				if _, err := s.DiscreteGaussian(tc.sigma2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelease: a fresh release (charge on SQLite + noise + cache
// write) and a repeated one (cache hit).
func BenchmarkRelease(b *testing.B) {
	f := newFixture(b, privacy.MaxAmount, privacy.Refuse)
	r := f.releaser(b, nil)
	b.Run("fresh", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := r.Release(ctx, request("ps_bench", time.Duration(i).String())); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Release(ctx, request("ps_bench", "1ns")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
