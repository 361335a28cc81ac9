package psi

import (
	"testing"

	"github.com/gtank/ristretto255"
)

// BenchmarkHashToGroup: hash_to_ristretto255 of a short identifier plus
// its encoding, on one core.
func BenchmarkHashToGroup(b *testing.B) {
	h := newHasher(dstPrime(DST([]byte("bench-session-0123456789"))))
	id := []byte("+8613800138000")
	var e ristretto255.Element
	var out [PointBytes]byte
	for b.Loop() {
		h.hash(&e, id)
		e.Encode(out[:0])
	}
}

// BenchmarkScalarMult: per element on one core, the bare variable-base
// multiplication and the whole of what Reblind does to a received point
// (decode, canonical re-encode check, identity check, multiply, encode).
func BenchmarkScalarMult(b *testing.B) {
	k, err := NewKey()
	if err != nil {
		b.Fatal(err)
	}
	var p ristretto255.Element
	newHasher(dstPrime([]byte("d"))).hash(&p, []byte("x"))
	enc := p.Encode(nil)
	b.Run("mult", func(b *testing.B) {
		var q ristretto255.Element
		for b.Loop() {
			q.ScalarMult(k.s, &p)
		}
	})
	b.Run("decode", func(b *testing.B) {
		var q ristretto255.Element
		for b.Loop() {
			if err := q.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate+mult+encode", func(b *testing.B) {
		out := make([]byte, PointBytes)
		for b.Loop() {
			if err := k.Reblind(enc, 0, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate+mult+tag", func(b *testing.B) {
		out := make([]byte, 10)
		for b.Loop() {
			if err := k.Reblind(enc, 10, out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
