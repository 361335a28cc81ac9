package privacy

import (
	"bytes"
	"errors"
	"io"
	"math/big"
	"math/bits"
	"testing"
)

// TestUniform64Unbiased feeds every byte value (and for two-byte bounds
// every pair) once and checks that each value in [0, n) comes out exactly
// equally often: values ≥ n are rejected, never reduced modulo n.
func TestUniform64Unbiased(t *testing.T) {
	for _, n := range []uint64{2, 3, 5, 7, 100, 129, 200, 255, 256, 257, 1000, 40000, 65535, 65536} {
		nbytes := (bits.Len64(n-1) + 7) / 8
		var all []byte
		for v := range 1 << (8 * nbytes) {
			for i := nbytes - 1; i >= 0; i-- {
				all = append(all, byte(v>>(8*i)))
			}
		}
		s := NewSampler(bytes.NewReader(all))
		counts := make([]int, n)
		for {
			v, err := s.uniform64(n)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if v >= n {
				t.Fatalf("uniform64(%d) = %d", n, v)
			}
			counts[v]++
		}
		want := (1 << (8 * nbytes)) >> bits.Len64(n-1)
		for v, c := range counts {
			if c != want {
				t.Fatalf("uniform64(%d): value %d drawn %d times, want %d", n, v, c, want)
			}
		}
	}
}

// TestUniformBig: bounds of 2^64 and more go through rand.Int, which is
// unbiased by rejection too; check the range and that both halves occur.
func TestUniformBig(t *testing.T) {
	s := NewSampler(nil)
	n := new(big.Int).Lsh(big.NewInt(3), 64)
	half := new(big.Int).Rsh(n, 1)
	var low, high int
	for range 2000 {
		v, err := s.uniform(n)
		if err != nil {
			t.Fatal(err)
		}
		if v.Sign() < 0 || v.Cmp(n) >= 0 {
			t.Fatalf("uniform(%v) = %v", n, v)
		}
		if v.Cmp(half) < 0 {
			low++
		} else {
			high++
		}
	}
	if low < 850 || high < 850 { // 2000 fair coins: 6.7 standard deviations
		t.Fatalf("halves %d / %d", low, high)
	}
}

// TestBigPath: parameters whose products exceed 64 bits take the math/big
// path of bernoulliFrac and laplace; the result must still be exact.
// Scale 2^70/2^69 = 2 equals the scale 2/1, so both must match the
// distribution with t = 2 (compared on P[0] and the variance).
func TestBigPath(t *testing.T) {
	s := NewSampler(nil)
	num := new(big.Int).Lsh(bigOne, 70)
	den := new(big.Int).Lsh(bigOne, 69)
	const n = 50_000
	var zeros int
	var sum2 float64
	for range n {
		z, err := s.laplace(num, den)
		if err != nil {
			t.Fatal(err)
		}
		if z.Sign() == 0 {
			zeros++
		}
		f, _ := new(big.Float).SetInt(z).Float64()
		sum2 += f * f
	}
	// t = 2: p = e^{-1/2}, P[0] = (1−p)/(1+p) = 0.2449, Var = 2p/(1−p)² = 7.8265.
	if p0 := float64(zeros) / n; p0 < 0.2449-0.0097 || p0 > 0.2449+0.0097 { // 5 SE
		t.Errorf("P[0] = %.4f, want 0.2449", p0)
	}
	if v := sum2 / n; v < 7.8265*0.93 || v > 7.8265*1.07 {
		t.Errorf("variance %.3f, want 7.8265 ± 7%%", v)
	}
}

// FuzzDecodeCached: cached releases come back from the cache (Redis in
// production); anything unreadable must be a miss, never a wrong value.
func FuzzDecodeCached(f *testing.F) {
	f.Add([]byte("v1:123"))
	f.Add([]byte("v1:-9223372036854775808"))
	f.Add([]byte("v1:+1"))
	f.Add([]byte("v1:007"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeCached(b)
		if err != nil {
			return
		}
		if got := encodeCached(v); !bytes.Equal(got, b) {
			t.Fatalf("decoded %q as %d, which encodes as %q", b, v, got)
		}
	})
}
