package kkrt

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// tagIndex finds the guest elements whose (hash index, OPRF value) equals a
// host value: open addressing with linear probing, at most half full. A
// slot holds element+1 (low 32 bits, 0 empty) and a 32-bit fingerprint of
// the value and hash index (high bits), so a lookup that finds nothing,
// the common case, reads the slot array only. Values are pseudorandom, so
// their own bytes serve as hash and fingerprint; a fingerprint match is
// confirmed on the full value. 16 bytes per guest element besides the
// values. Read-only once built, so safe for concurrent lookups.
type tagIndex struct {
	slots  []uint64
	shift  uint
	tags   []byte
	tagLen int
	hidx   []uint8
}

func newTagIndex(tags []byte, tagLen int, hidx []uint8) *tagIndex {
	n := len(hidx)
	logSlots := slotBits(n)
	x := &tagIndex{slots: make([]uint64, 1<<logSlots), shift: uint(64 - logSlots), tags: tags, tagLen: tagLen, hidx: hidx}
	mask := uint64(len(x.slots) - 1)
	for e := range n {
		s, fp := x.key(tags[e*tagLen:(e+1)*tagLen], int(hidx[e]))
		for x.slots[s] != 0 {
			s = (s + 1) & mask
		}
		x.slots[s] = fp<<32 | uint64(e+1)
	}
	return x
}

// key returns the slot and the 32-bit fingerprint of a value under a hash
// index.
// slotBits returns log2 of an open-addressing table size for n entries:
// the least power of two at least 2n (so at most half full), and 16 or more.
func slotBits(n int) int {
	return max(4, bits.Len(uint(2*max(n, 1)-1)))
}

func (x *tagIndex) key(tag []byte, hash int) (slot, fp uint64) {
	var b [8]byte
	copy(b[:], tag)
	k := binary.LittleEndian.Uint64(b[:]) ^ uint64(hash+1)*0xc2b2ae3d27d4eb4f
	k *= 0x9e3779b97f4a7c15
	return k >> x.shift, k & 0xffffffff
}

// lookup calls fn for every element whose hash index is hash and whose
// value equals tag.
func (x *tagIndex) lookup(tag []byte, hash int, fn func(e int32)) {
	mask := uint64(len(x.slots) - 1)
	s, fp := x.key(tag, hash)
	for v := x.slots[s]; v != 0; v = x.slots[s] {
		if v>>32 == fp {
			e := int(uint32(v) - 1)
			if int(x.hidx[e]) == hash && bytes.Equal(x.tags[e*x.tagLen:(e+1)*x.tagLen], tag) {
				fn(int32(e))
			}
		}
		s = (s + 1) & mask
	}
}
