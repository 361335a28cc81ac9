package psi_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func TestShuffleIsPermutation(t *testing.T) {
	for _, n := range []int{0, 1, 2, 10, 1000, 65537} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p, err := psi.Shuffle(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != n {
				t.Fatalf("length %d", len(p))
			}
			sorted := slices.Sorted(slices.Values(p))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("not a permutation of 0..%d: sorted[%d] = %d", n-1, i, v)
				}
			}
			// For n >= 10 the identity has probability 1/n! < 3e-7.
			if n >= 10 && slices.IsSorted(p) {
				t.Fatal("the identity permutation")
			}
		})
	}
	if _, err := psi.Shuffle(-1); err == nil {
		t.Fatal("negative size accepted")
	}
}

// TestShuffleReachesEveryPermutation is a sanity check, not a statistical
// test: 600 shuffles of 3 elements miss one of the 6 orders with
// probability about 6·(5/6)^600 < 1e-46.
func TestShuffleReachesEveryPermutation(t *testing.T) {
	seen := map[[3]int]int{}
	for range 600 {
		p, err := psi.Shuffle(3)
		if err != nil {
			t.Fatal(err)
		}
		seen[[3]int(p)]++
	}
	if len(seen) != 6 {
		t.Fatalf("only %d of 6 permutations in 600 shuffles: %v", len(seen), seen)
	}
}

func TestShuffleRecords(t *testing.T) {
	const n, w = 500, 3
	b := make([]byte, n*w)
	for i := range n {
		b[i*w], b[i*w+1], b[i*w+2] = byte(i), byte(i>>8), 0xab
	}
	orig := slices.Clone(b)
	if err := psi.ShuffleRecords(b, w); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(b, orig) {
		t.Fatal("records not moved")
	}
	seen := map[int]bool{}
	for i := range n {
		if b[i*w+2] != 0xab {
			t.Fatal("a record was torn")
		}
		seen[int(b[i*w])|int(b[i*w+1])<<8] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records after shuffling %d", len(seen), n)
	}
}
