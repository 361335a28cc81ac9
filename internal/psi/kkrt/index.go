package kkrt

import (
	"bytes"
	"math/bits"
)

// tagIndex finds the guest elements whose (hash index, OPRF value) equals a
// host value: open addressing with linear probing over 32-bit slots (element
// + 1, 0 empty), at most half full, keyed by the value's first bytes (values
// are pseudorandom) mixed with the hash index. Values are compared in full.
// About 4·2·n bytes besides the values themselves. Read-only once built, so
// safe for concurrent lookups.
type tagIndex struct {
	slots  []uint32
	shift  uint
	tags   []byte
	tagLen int
	hidx   []uint8
}

func newTagIndex(tags []byte, tagLen int, hidx []uint8) *tagIndex {
	n := len(hidx)
	logSlots := max(4, bits.Len(uint(2*n)))
	x := &tagIndex{slots: make([]uint32, 1<<logSlots), shift: uint(64 - logSlots), tags: tags, tagLen: tagLen, hidx: hidx}
	mask := uint64(len(x.slots) - 1)
	for e := range n {
		s := x.slot(tags[e*tagLen:(e+1)*tagLen], int(hidx[e]))
		for x.slots[s] != 0 {
			s = (s + 1) & mask
		}
		x.slots[s] = uint32(e) + 1
	}
	return x
}

func (x *tagIndex) slot(tag []byte, hash int) uint64 {
	var k uint64
	for i := range min(8, len(tag)) {
		k |= uint64(tag[i]) << (8 * i)
	}
	k ^= uint64(hash+1) * 0xc2b2ae3d27d4eb4f
	return (k * 0x9e3779b97f4a7c15) >> x.shift
}

// lookup calls fn for every element whose hash index is hash and whose
// value equals tag.
func (x *tagIndex) lookup(tag []byte, hash int, fn func(e int32)) {
	mask := uint64(len(x.slots) - 1)
	for s := x.slot(tag, hash); x.slots[s] != 0; s = (s + 1) & mask {
		e := int(x.slots[s] - 1)
		if int(x.hidx[e]) == hash && bytes.Equal(x.tags[e*x.tagLen:(e+1)*x.tagLen], tag) {
			fn(int32(e))
		}
	}
}
