package psi_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func TestTagBytes(t *testing.T) {
	tests := []struct {
		n, m, want int
	}{
		{0, 0, 5},           // sizes below 1 count as 1: 40 bits
		{1, 1, 5},           // 40 bits
		{2, 1, 6},           // 41 bits
		{1 << 4, 1 << 4, 6}, // 48 bits
		{3, 3, 6},           // ceil(log2 9) = 4: 44 bits
		{1000, 1000, 8},     // ceil(log2 1e6) = 20: 60 bits
		{1 << 12, 1 << 12, 8},
		{1<<12 + 1, 1 << 12, 9}, // 65 bits
		{1 << 16, 1 << 16, 9},   // 72 bits
		{1 << 20, 1, 8},         // 60 bits
		{1 << 20, 1 << 20, 10},  // 80 bits: the 2^20 traffic target
		{1<<20 + 1, 1 << 20, 11},
		{1 << 24, 1 << 24, 11},
		{psi.MaxSetSize, psi.MaxSetSize, 13}, // 100 bits, within MaxTagBytes
		{1 << 62, 1 << 62, 21},               // the 128-bit product path
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.n, tt.m), func(t *testing.T) {
			if got := psi.TagBytes(tt.n, tt.m); got != tt.want {
				t.Fatalf("TagBytes(%d, %d) = %d, want %d", tt.n, tt.m, got, tt.want)
			}
			if got := psi.TagBytes(tt.m, tt.n); got != tt.want {
				t.Fatalf("TagBytes is not symmetric")
			}
		})
	}
	if psi.TagBytes(psi.MaxSetSize, psi.MaxSetSize) > psi.MaxTagBytes {
		t.Fatal("the largest sessions need tags longer than a Matcher holds")
	}
}

func tagsOf(tagLen int, vals ...int) []byte {
	var b []byte
	for _, v := range vals {
		tag := make([]byte, tagLen)
		for i := range tag {
			tag[i] = byte(v >> (8 * (i % 4)))
		}
		tag[tagLen-1] ^= 0x5a // use the last byte too
		b = append(b, tag...)
	}
	return b
}

func TestMatcher(t *testing.T) {
	for _, tagLen := range []int{1, 5, 8, 9, 16} {
		t.Run(fmt.Sprint(tagLen), func(t *testing.T) {
			m := psi.NewMatcher(tagLen, 8)
			// Guest values at indices 0..7, with a duplicate (3 at 2 and 6).
			m.AddGuest(0, tagsOf(tagLen, 10, 11, 3, 12))
			m.AddGuest(4, tagsOf(tagLen, 13, 14, 3, 15))
			if m.Len() != 8 || m.TagLen() != tagLen {
				t.Fatalf("Len %d TagLen %d", m.Len(), m.TagLen())
			}
			got := m.MatchHost(tagsOf(tagLen, 99, 15, 3, 11, 3, 98))
			if want := []int{1, 2, 6, 7}; !slices.Equal(got, want) {
				t.Fatalf("MatchHost = %v, want %v", got, want)
			}
			var pairs [][2]int
			m.MatchHostFunc(tagsOf(tagLen, 3, 98, 10), func(j, g int) { pairs = append(pairs, [2]int{j, g}) })
			if want := [][2]int{{0, 2}, {0, 6}, {2, 0}}; !slices.Equal(pairs, want) {
				t.Fatalf("MatchHostFunc pairs %v, want %v", pairs, want)
			}
			if got := m.MatchHost(tagsOf(tagLen, 97, 96)); len(got) != 0 {
				t.Fatalf("no-match gave %v", got)
			}
			if got := m.MatchHost(nil); len(got) != 0 {
				t.Fatalf("empty gave %v", got)
			}
		})
	}
}

func TestMatcherPanicsOnMisuse(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("tag length 0", func() { psi.NewMatcher(0, 1) })
	mustPanic("tag length 17", func() { psi.NewMatcher(17, 1) })
	mustPanic("negative size", func() { psi.NewMatcher(8, -1) })
	m := psi.NewMatcher(8, 4)
	mustPanic("partial tag", func() { m.AddGuest(0, make([]byte, 9)) })
	mustPanic("past the end", func() { m.AddGuest(3, make([]byte, 16)) })
	mustPanic("negative start", func() { m.AddGuest(-1, make([]byte, 8)) })
}
