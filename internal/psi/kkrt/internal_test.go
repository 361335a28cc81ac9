package kkrt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/gtank/ristretto255"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func TestBaseOT(t *testing.T) {
	sess := SessionTagOf([]byte("ot"))
	sender, err := newOTSender()
	if err != nil {
		t.Fatal(err)
	}
	var sb [RowBytes]byte
	if _, err := rand.Read(sb[:]); err != nil {
		t.Fatal(err)
	}
	var s [rowWords]uint64
	getRow(sb[:], &s)
	points, recv, err := otReceive(sess, &s, sender.A[:])
	if err != nil {
		t.Fatal(err)
	}
	both, err := sender.keys(sess, points)
	if err != nil {
		t.Fatal(err)
	}
	for i := range CodeBits {
		c := (s[i/64] >> (i % 64)) & 1
		if recv[i] != both[i][c] {
			t.Fatalf("OT %d: receiver key is not the sender's key %d", i, c)
		}
		if recv[i] == both[i][1-c] || both[i][0] == both[i][1] {
			t.Fatalf("OT %d: keys not distinct", i)
		}
	}
	// Another session derives other keys from the same points.
	other, err := sender.keys(SessionTagOf([]byte("other")), points)
	if err != nil {
		t.Fatal(err)
	}
	if other[0] == both[0] {
		t.Fatal("keys do not depend on the session")
	}
}

func TestBaseOTRejectsPoints(t *testing.T) {
	sess := SessionTagOf([]byte("ot"))
	sender, err := newOTSender()
	if err != nil {
		t.Fatal(err)
	}
	var s [rowWords]uint64
	good, _, err := otReceive(sess, &s, sender.A[:])
	if err != nil {
		t.Fatal(err)
	}
	nonCanonical := bytes.Repeat([]byte{0xff}, PointBytes) // above the field prime
	bad := map[string][]byte{
		"identity":      make([]byte, PointBytes),
		"non-canonical": nonCanonical,
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			if _, _, err := otReceive(sess, &s, p); !errors.Is(err, psi.ErrInvalidPoint) {
				t.Fatalf("receiver accepted A: %v", err)
			}
			pts := bytes.Clone(good)
			copy(pts[7*PointBytes:], p)
			if _, err := sender.keys(sess, pts); !errors.Is(err, psi.ErrInvalidPoint) {
				t.Fatalf("sender accepted B_7: %v", err)
			}
		})
	}
	if _, err := sender.keys(sess, good[:len(good)-1]); !errors.Is(err, psi.ErrMalformed) {
		t.Fatalf("short points: %v", err)
	}
	sender.destroy()
	if _, err := sender.keys(sess, good); err == nil {
		t.Fatal("a destroyed sender derived keys")
	}
}

func TestDecodePointMatchesLibrary(t *testing.T) {
	var e ristretto255.Element
	e.Base()
	enc := e.Encode(nil)
	var p ristretto255.Element
	if err := decodePoint(&p, enc); err != nil || p.Equal(&e) != 1 {
		t.Fatalf("generator: %v", err)
	}
}

func TestCuckooPlacesEverything(t *testing.T) {
	for _, n := range []int{1, 2, 100, 5000, 20000, 70000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bins := Bins(n)
			var seed [SeedBytes]byte
			if _, err := rand.Read(seed[:]); err != nil {
				t.Fatal(err)
			}
			ck, err := newAES(seed[:])
			if err != nil {
				t.Fatal(err)
			}
			pos := make([][NumHashes]uint32, n)
			dg := newDigester(SessionTagOf([]byte("ck")))
			var tmp aesBuf
			for e := range pos {
				d := dg.digest(fmt.Appendf(nil, "id-%d", e))
				pos[e] = positions(ck, &d, bins, &tmp)
				for _, p := range pos[e] {
					if int(p) >= bins {
						t.Fatalf("position %d of %d bins", p, bins)
					}
				}
			}
			table, ok := buildCuckoo(pos, bins, seed)
			if !ok {
				t.Fatal("cuckoo failed")
			}
			checkPlacement(t, pos, table)
		})
	}
}

func checkPlacement(t *testing.T, pos [][NumHashes]uint32, table []uint32) {
	t.Helper()
	placed := make([]bool, len(pos))
	for b, v := range table {
		if v == emptyBin {
			continue
		}
		e, i := v>>2, v&3
		if int(e) >= len(pos) || i >= NumHashes || pos[e][i] != uint32(b) || placed[e] {
			t.Fatalf("bin %d holds element %d by hash %d wrongly", b, e, i)
		}
		placed[e] = true
	}
	for e, ok := range placed {
		if !ok {
			t.Fatalf("element %d not placed", e)
		}
	}
}

// TestCuckooExact: the exact search finds placements the random walk
// misses, and fails only when none exists.
func TestCuckooExact(t *testing.T) {
	// A chain: element k may use bins k and k+1 (and k again); the last bin
	// is free only at the end of a long eviction path when elements arrive
	// from the far end.
	const n = 600
	pos := make([][NumHashes]uint32, n)
	for e := range n {
		k := uint32(n - 1 - e)
		pos[e] = [NumHashes]uint32{k, k + 1, k}
	}
	table, ok := buildCuckoo(pos, n+1, [SeedBytes]byte{1})
	if !ok {
		t.Fatal("a placement exists but was not found")
	}
	checkPlacement(t, pos, table)
	// A full chain: element k sits in bin k and may also use bin k+1; a new
	// element hashing only to bin 0 needs every element moved one bin on,
	// far more than maxWalk evictions, so the exact search must do it.
	const chain = 3 * maxWalk
	pos = make([][NumHashes]uint32, chain+1)
	c := &cuckoo{bins: make([]uint32, chain+1), pos: pos, rng: 1}
	for k := range chain {
		pos[k] = [NumHashes]uint32{uint32(k), uint32(k + 1), uint32(k)}
		c.bins[k] = uint32(k) << 2
	}
	c.bins[chain] = emptyBin
	pos[chain] = [NumHashes]uint32{0, 0, 0}
	if !c.insert(chain) {
		t.Fatal("the exact search did not find the path along the chain")
	}
	checkPlacement(t, pos, c.bins)
	// Four elements confined to three bins cannot be placed.
	pos = [][NumHashes]uint32{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 1, 2}, {5, 6, 7}}
	if _, ok := buildCuckoo(pos, 8, [SeedBytes]byte{2}); ok {
		t.Fatal("placed four elements in three bins")
	}
}

// TestBinsUnionBound checks, for guest sets up to 2^14 (where Bins does not
// rely on the empirical formula), the union bound over Hall violations:
// Σ_s C(n, s+1)·C(N, s)·(s/N)^{3(s+1)} ≤ 2^-40, the probability that some
// s+1 elements have all their hash values in s bins, which is necessary for
// the table to fail.
func TestBinsUnionBound(t *testing.T) {
	lc := func(a, b int) float64 {
		la, _ := math.Lgamma(float64(a + 1))
		lb, _ := math.Lgamma(float64(b + 1))
		lab, _ := math.Lgamma(float64(a - b + 1))
		return la - lb - lab
	}
	bound := func(n, bins int) float64 {
		maxTerm := math.Inf(-1)
		var terms []float64
		for s := 1; s < min(n, bins); s++ {
			v := lc(n, s+1) + lc(bins, s) + float64(NumHashes*(s+1))*math.Log(float64(s)/float64(bins))
			terms = append(terms, v)
			maxTerm = max(maxTerm, v)
		}
		if len(terms) == 0 {
			return math.Inf(-1)
		}
		sum := 0.0
		for _, v := range terms {
			sum += math.Exp(v - maxTerm)
		}
		return (maxTerm + math.Log(sum)) / math.Ln2
	}
	for _, n := range []int{2, 3, 10, 100, 1000, 2048, 4096, 5000, 6000, 8192, 10000, 12000, 16384} {
		if b := bound(n, Bins(n)); b > -statisticalBits {
			t.Errorf("n=%d, %d bins: failure bound 2^%.1f", n, Bins(n), b)
		}
	}
}

func TestBinsFormula(t *testing.T) {
	cases := map[int]int{0: 0, 1: smallBins, 5120: smallBins, 5121: 8194, 1 << 14: 26215,
		1<<14 + 1: (((1<<14 + 1) * (40 + 256 + 15)) + 239) / 240, 1 << 20: 1380626, 1 << 24: 22369622}
	for n, want := range cases {
		if got := Bins(n); got != want {
			t.Errorf("Bins(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestPermuteDigests(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		perm, err := permutation([SeedBytes]byte{byte(n)}, n)
		if err != nil {
			t.Fatal(err)
		}
		d := make([]digest, n)
		for i := range d {
			d[i][0], d[i][1] = byte(i), byte(i>>8)
		}
		want := make([]digest, n)
		for p, row := range perm {
			want[p] = d[row]
		}
		permuteDigests(d, perm)
		for p := range d {
			if d[p] != want[p] {
				t.Fatalf("n=%d: position %d wrong", n, p)
			}
		}
	}
}
