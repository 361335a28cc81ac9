package psi

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// statisticalBits is the security margin of tag truncation: the chance
// that any of the n·m comparisons of a session is a false match is at most
// 2^-statisticalBits.
const statisticalBits = 40

// MaxTagBytes is the longest tag a Matcher holds. TagBytes stays below it
// for every set size up to MaxSetSize.
const MaxTagBytes = 16

// TagBytes returns the tag length, in bytes, for a guest set of n and a host
// set of m elements: 40 + ceil(log2(n·m)) bits rounded up to whole bytes, so
// that a false match among all n·m pairs has probability at most 2^-40.
// Sizes below 1 count as 1. Examples: n = m = 2^16 → 9, n = m = 2^20 → 10.
func TagBytes(n, m int) int {
	un, um := uint64(max(n, 1)), uint64(max(m, 1))
	hi, lo := bits.Mul64(un, um)
	// ceil(log2(x)) = bitlen(x-1) for x >= 1, here on the 128-bit product.
	if lo == 0 {
		hi, lo = hi-1, ^uint64(0)
	} else {
		lo--
	}
	log := bits.Len64(lo)
	if hi != 0 {
		log = 64 + bits.Len64(hi)
	}
	return (statisticalBits + log + 7) / 8
}

// tagKey is a tag of up to 16 bytes as a map key, zero-padded. A fixed-size
// key keeps a map of 2^20 tags near 40 MB, where string keys would need
// more than twice that.
type tagKey struct{ hi, lo uint64 }

func keyOf(tag []byte) tagKey {
	var b [MaxTagBytes]byte
	copy(b[:], tag)
	return tagKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// Matcher holds the guest's tags (step 2 of the protocol), indexed by the
// guest's element positions, and finds the host's tags among them (step 4).
// Equal guest tags (duplicate identifiers) are all kept. Tags are the
// protocol's output, not secrets, so lookups need not be constant-time.
// A Matcher is not safe for concurrent use.
type Matcher struct {
	tagLen int
	n      int
	first  map[tagKey]int32   // tag → lowest guest index with that tag
	more   map[tagKey][]int32 // tag → further guest indices (duplicates)
	added  int
}

// NewMatcher returns an empty Matcher for n guest tags of tagLen bytes.
// It panics if tagLen is not in 1..MaxTagBytes or n is not in
// 0..MaxSetSize: both are set by the caller, never read from the wire.
func NewMatcher(tagLen, n int) *Matcher {
	if tagLen < 1 || tagLen > MaxTagBytes {
		panic(fmt.Sprintf("psi: NewMatcher: tag length %d out of range 1..%d", tagLen, MaxTagBytes))
	}
	if n < 0 || n > MaxSetSize {
		panic(fmt.Sprintf("psi: NewMatcher: size %d out of range 0..%d", n, MaxSetSize))
	}
	return &Matcher{tagLen: tagLen, n: n, first: make(map[tagKey]int32, n)}
}

// TagLen returns the tag length the Matcher was made for.
func (m *Matcher) TagLen() int { return m.tagLen }

// Len returns the number of guest tags added so far.
func (m *Matcher) Len() int { return m.added }

// AddGuest adds the tags of guest elements start, start+1, ...: tags holds
// len(tags)/tagLen tags back to back. It panics if tags is not a whole
// number of tags or the range leaves 0..n-1; callers check sizes read from
// the wire first (the protocol roles do). Adding the same index twice is
// the caller's error and is not detected.
func (m *Matcher) AddGuest(start int, tags []byte) {
	if len(tags)%m.tagLen != 0 {
		panic(fmt.Sprintf("psi: Matcher.AddGuest: %d bytes is not a whole number of %d-byte tags", len(tags), m.tagLen))
	}
	count := len(tags) / m.tagLen
	if start < 0 || start > m.n-count {
		panic(fmt.Sprintf("psi: Matcher.AddGuest: tags %d..%d outside 0..%d", start, start+count-1, m.n-1))
	}
	for i := range count {
		k := keyOf(tags[i*m.tagLen : (i+1)*m.tagLen])
		idx := int32(start + i)
		if _, dup := m.first[k]; dup {
			if m.more == nil {
				m.more = make(map[tagKey][]int32)
			}
			m.more[k] = append(m.more[k], idx)
			continue
		}
		m.first[k] = idx
	}
	m.added += count
}

// MatchHostFunc calls fn(j, g) for every host tag j of tags (in order) and
// every guest index g whose tag equals it. A trailing partial tag is
// ignored; callers pass whole batches.
func (m *Matcher) MatchHostFunc(tags []byte, fn func(hostOffset, guestIndex int)) {
	for j := 0; j+m.tagLen <= len(tags); j += m.tagLen {
		k := keyOf(tags[j : j+m.tagLen])
		g, ok := m.first[k]
		if !ok {
			continue
		}
		fn(j/m.tagLen, int(g))
		for _, g := range m.more[k] {
			fn(j/m.tagLen, int(g))
		}
	}
}

// MatchHost returns, in ascending order and each once, the guest indices
// whose tags occur among the host tags in tags.
func (m *Matcher) MatchHost(tags []byte) []int {
	var out []int
	m.MatchHostFunc(tags, func(_, g int) { out = append(out, g) })
	slices.Sort(out)
	return slices.Compact(out)
}
