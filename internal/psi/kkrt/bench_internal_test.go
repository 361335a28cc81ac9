package kkrt

import (
	"crypto/sha256"
	"testing"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/blake2s"
)

// BenchmarkPrimitives: the per-unit costs on one core.
func BenchmarkPrimitives(b *testing.B) {
	block, err := newAES(make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	var d digest
	var row [rowWords]uint64
	var tmp aesBuf
	tag := make([]byte, 10)
	b.Run("digest", func(b *testing.B) {
		dg := newDigester(SessionTagOf([]byte("bench")))
		id := []byte("+8613800138000")
		for b.Loop() {
			d = dg.digest(id)
		}
	})
	b.Run("positions", func(b *testing.B) {
		for b.Loop() {
			_ = positions(block, &d, 1<<20, &tmp)
		}
	})
	b.Run("codeword", func(b *testing.B) {
		for b.Loop() {
			codeword(block, &d, 1, &row, &tmp)
		}
	})
	b.Run("rowTag/sha256", func(b *testing.B) {
		th := newTagHasher()
		for b.Loop() {
			th.tag(&row, tag)
		}
	})
	b.Run("rowTag/sha256.Sum256", func(b *testing.B) {
		var buf [RowBytes]byte
		for b.Loop() {
			putRow(buf[:], &row)
			_ = sha256.Sum256(buf[:])
		}
	})
	b.Run("rowTag/blake2b-256", func(b *testing.B) {
		var buf [RowBytes]byte
		for b.Loop() {
			putRow(buf[:], &row)
			_ = blake2b.Sum256(buf[:])
		}
	})
	b.Run("rowTag/blake2s-256", func(b *testing.B) {
		var buf [RowBytes]byte
		for b.Loop() {
			putRow(buf[:], &row)
			_ = blake2s.Sum256(buf[:])
		}
	})
	b.Run("transpose64", func(b *testing.B) {
		var x [64]uint64
		for i := range x {
			x[i] = uint64(i) * 0x9e3779b97f4a7c15
		}
		for b.Loop() {
			transpose64(&x)
		}
	})
	b.Run("prg-column-8192-bins", func(b *testing.B) {
		seeds := make([][SeedBytes]byte, CodeBits)
		p, err := newColumnPRG(seeds)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]uint64, 8192/64)
		ks := make([]byte, 8*len(dst))
		b.SetBytes(8192 / 8)
		for b.Loop() {
			p.fill(3, 0, dst, ks)
		}
	})
}
