package kkrt

import (
	"math/rand/v2"
	"testing"
)

func TestTranspose64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var x, orig [64]uint64
	for i := range x {
		x[i] = r.Uint64()
	}
	orig = x
	transpose64(&x)
	for row := range 64 {
		for col := range 64 {
			if (x[row]>>col)&1 != (orig[col]>>row)&1 {
				t.Fatalf("bit (%d,%d) wrong", row, col)
			}
		}
	}
	transpose64(&x)
	if x != orig {
		t.Fatal("transposing twice is not the identity")
	}
}

func TestTransposeColumns(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const words = 5
	cols := make([]uint64, CodeBits*words)
	for i := range cols {
		cols[i] = r.Uint64()
	}
	rows := make([]uint64, words*64*rowWords)
	transposeColumns(cols, words, 0, 2, rows)
	transposeColumns(cols, words, 2, words, rows)
	for bin := range words * 64 {
		for c := range rowWords * 64 {
			got := (rows[bin*rowWords+c/64] >> (c % 64)) & 1
			var want uint64
			if c < CodeBits {
				want = (cols[c*words+bin/64] >> (bin % 64)) & 1
			}
			if got != want {
				t.Fatalf("bin %d column %d: got %d want %d", bin, c, got, want)
			}
		}
	}
}
