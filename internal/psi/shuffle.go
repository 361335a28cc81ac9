package psi

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Shuffle returns a uniformly random permutation of 0..n-1, drawn with
// Fisher–Yates from crypto/rand (each swap index is unbiased: rejection
// sampling, never a modulo of a random word).
func Shuffle(n int) ([]int, error) {
	if n < 0 {
		return nil, fmt.Errorf("psi: shuffle: negative size %d: %w", n, ErrMalformed)
	}
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	if err := fisherYates(n, func(i, j int) { p[i], p[j] = p[j], p[i] }); err != nil {
		return nil, err
	}
	return p, nil
}

// shuffleRecords permutes the width-byte records of b uniformly at random
// in place.
func shuffleRecords(b []byte, width int) error {
	n := len(b) / width
	tmp := make([]byte, width)
	return fisherYates(n, func(i, j int) {
		if i == j {
			return
		}
		ri, rj := b[i*width:(i+1)*width], b[j*width:(j+1)*width]
		copy(tmp, ri)
		copy(ri, rj)
		copy(rj, tmp)
	})
}

// fisherYates calls swap(i, j) for i = n-1 down to 1 with j uniform in
// 0..i, which applies a uniformly random permutation.
func fisherYates(n int, swap func(i, j int)) error {
	r := &randWords{}
	defer clear(r.buf[:]) // the permutation is the host's secret
	for i := n - 1; i > 0; i-- {
		j, err := r.below(uint64(i) + 1)
		if err != nil {
			return fmt.Errorf("psi: shuffle: %w", err)
		}
		swap(i, int(j))
	}
	return nil
}

// randWords hands out 64-bit words from crypto/rand, read 4 KiB at a time.
type randWords struct {
	buf [4096]byte
	pos int
	ok  bool
}

func (r *randWords) next() (uint64, error) {
	if !r.ok || r.pos == len(r.buf) {
		if _, err := io.ReadFull(rand.Reader, r.buf[:]); err != nil {
			return 0, err
		}
		r.pos, r.ok = 0, true
	}
	v := binary.LittleEndian.Uint64(r.buf[r.pos:])
	r.pos += 8
	return v, nil
}

// below returns a uniform value in [0, bound), bound > 0, by Lemire's
// multiply-and-reject method ("Fast Random Integer Generation in an
// Interval", 2019): no modulo bias.
func (r *randWords) below(bound uint64) (uint64, error) {
	x, err := r.next()
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(x, bound)
	if lo < bound {
		threshold := -bound % bound // (2^64 - bound) mod bound
		for lo < threshold {
			if x, err = r.next(); err != nil {
				return 0, err
			}
			hi, lo = bits.Mul64(x, bound)
		}
	}
	return hi, nil
}
