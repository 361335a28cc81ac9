package hetero

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
)

// i128 is a two's-complement 128-bit integer: the fixed-point scores,
// masked scores and masked residuals of the protocol fit in it exactly.
type i128 struct{ hi, lo uint64 }

func i128From(v int64) i128 {
	if v < 0 {
		return i128{hi: math.MaxUint64, lo: uint64(v)}
	}
	return i128{lo: uint64(v)}
}

func (a i128) add(b i128) i128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, c)
	return i128{hi, lo}
}

func (a i128) neg() i128 {
	lo, b := bits.Sub64(0, a.lo, 0)
	hi, _ := bits.Sub64(0, a.hi, b)
	return i128{hi, lo}
}

func (a i128) sub(b i128) i128 { return a.add(b.neg()) }

func (a i128) isNeg() bool { return a.hi>>63 == 1 }

// abs returns |a| as an unsigned 128-bit value (hi, lo).
func (a i128) abs() i128 {
	if a.isNeg() {
		return a.neg()
	}
	return a
}

// mulSmall returns a·m for 0 ≤ m < 2^63; the caller keeps the product in
// range (it is used for class weights of at most 2^24 times values below
// 2^100).
func (a i128) mulSmall(m uint64) i128 {
	neg := a.isNeg()
	x := a.abs()
	h1, l := bits.Mul64(x.lo, m)
	_, h2 := bits.Mul64(x.hi, m)
	r := i128{hi: h1 + h2, lo: l}
	if neg {
		return r.neg()
	}
	return r
}

// mod returns a mod q in [0, q).
func (a i128) mod(q uint64) uint64 {
	x := a.abs()
	r := bits.Rem64(x.hi%q, x.lo, q)
	if a.isNeg() && r != 0 {
		return q - r
	}
	return r
}

// bitLen returns the bit length of |a|.
func (a i128) bitLen() int {
	x := a.abs()
	if x.hi != 0 {
		return 64 + bits.Len64(x.hi)
	}
	return bits.Len64(x.lo)
}

func (a i128) big() *big.Int {
	x := a.abs()
	v := new(big.Int).SetUint64(x.hi)
	v.Lsh(v, 64)
	v.Or(v, new(big.Int).SetUint64(x.lo))
	if a.isNeg() {
		v.Neg(v)
	}
	return v
}

func (a i128) put(b []byte) {
	binary.BigEndian.PutUint64(b, a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
}

func getI128(b []byte) i128 {
	return i128{hi: binary.BigEndian.Uint64(b), lo: binary.BigEndian.Uint64(b[8:])}
}

// quantize returns round(v·2^frac) if it fits in bound bits (|result| <
// 2^bound), and false otherwise.
func quantize(v float64, frac, bound int) (int64, bool) {
	x := math.Round(math.Ldexp(v, frac))
	if math.IsNaN(x) || math.Abs(x) >= math.Ldexp(1, bound) || math.Abs(x) >= 1<<62 {
		return 0, false
	}
	return int64(x), true
}

// mulmod returns a·b mod q.
func mulmod(a, b, q uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi, lo, q)
}

// smod32 returns v mod q in [0, q) for q > 2^31.
func smod32(v int32, q uint64) uint64 {
	if v >= 0 {
		return uint64(v)
	}
	return q - uint64(-int64(v))
}

// batchColumns holds a batch's fixed-point features column by column:
// x[col·rows + i] for the batch's i-th row.
type batchColumns struct {
	rows int
	x    []int32
}

func (c batchColumns) col(j int) []int32 { return c.x[j*c.rows : (j+1)*c.rows] }

// quantizeBatches returns each batch's columns of round(x·2^frac), with an
// extra all-ones column (2^frac) when intercept; false if a value reaches
// 2^bound.
func quantizeBatches(x func(row int) []float64, batches [][]int, cols, frac, bound int, intercept bool) ([]batchColumns, bool) {
	out := make([]batchColumns, len(batches))
	total := cols
	if intercept {
		total++
	}
	for k, rows := range batches {
		bc := batchColumns{rows: len(rows), x: make([]int32, total*len(rows))}
		for i, row := range rows {
			for j, v := range x(row) {
				q, ok := quantize(v, frac, bound)
				if !ok || q != int64(int32(q)) {
					return nil, false
				}
				bc.x[j*len(rows)+i] = int32(q)
			}
			if intercept {
				bc.x[cols*len(rows)+i] = 1 << frac
			}
		}
		out[k] = bc
	}
	return out, true
}
