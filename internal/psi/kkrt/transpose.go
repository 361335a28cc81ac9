package kkrt

// transpose64 transposes a 64×64 bit matrix in place: on return, bit k of
// x[r] is what bit r of x[k] was. It swaps ever smaller off-diagonal
// blocks (32×32, 16×16, … 1×1), six rounds of 32 word pairs.
func transpose64(x *[64]uint64) {
	swap := func(j uint, m uint64) {
		for k := 0; k < 64; k = (k + int(j) + 1) &^ int(j) {
			t := ((x[k] >> j) ^ x[k+int(j)]) & m
			x[k] ^= t << j
			x[k+int(j)] ^= t
		}
	}
	swap(32, 0x00000000ffffffff)
	swap(16, 0x0000ffff0000ffff)
	swap(8, 0x00ff00ff00ff00ff)
	swap(4, 0x0f0f0f0f0f0f0f0f)
	swap(2, 0x3333333333333333)
	swap(1, 0x5555555555555555)
}

// transposeColumns turns column-major bits into rows. cols holds CodeBits
// columns of words 64-bit words each (bin j of a column is bit j%64 of word
// j/64); for the words w0..w1-1 it writes rows 64·w0 .. 64·w1-1 of rows,
// rowWords words each (column c of a row is bit c%64 of word c/64), the
// columns beyond CodeBits zero. len(rows) must be at least 64·w1·rowWords.
func transposeColumns(cols []uint64, words, w0, w1 int, rows []uint64) {
	var blk [64]uint64
	for w := w0; w < w1; w++ {
		for g := range rowWords {
			c0 := g * 64
			n := min(64, CodeBits-c0)
			for k := range n {
				blk[k] = cols[(c0+k)*words+w]
			}
			clear(blk[n:])
			transpose64(&blk)
			base := w * 64 * rowWords
			for r := range 64 {
				rows[base+r*rowWords+g] = blk[r]
			}
		}
	}
}
