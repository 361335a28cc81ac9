package kkrt

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Protocol parameters. See the package documentation for why each value.
const (
	// CodeBits is the width k of the pseudorandom code, and so the number
	// of base OTs and of columns of the OT-extension matrices.
	CodeBits = 440
	// RowBytes is one row of the OT-extension matrices on the wire: the
	// CodeBits bits, least significant bit of byte 0 first.
	RowBytes = CodeBits / 8
	// rowWords is a row in memory: seven 64-bit words, the last holding 56
	// bits (its top byte always zero).
	rowWords = 7
	// NumHashes is the number of cuckoo hash functions.
	NumHashes = 3
	// statisticalBits is λ: cuckoo failure and false matches each stay
	// below 2^-λ.
	statisticalBits = 40
	// smallSet is the largest guest set sized by the exact union bound
	// (smallBins, smallFactor) rather than by the empirical formula.
	smallSet = 1 << 14
	// smallBins is the least table size for any non-empty guest set.
	smallBins = 8192
	// MaxSetSize bounds either party's set: 2^26, the largest size for
	// which the code width is proven sufficient even counting every guest
	// bin against every host value (see the package documentation), and
	// above psijob's limit. It also bounds what a peer's hello can make a
	// party allocate.
	MaxSetSize = 1 << 26
	// binsPerBlock is the number of bins one AES block of a column covers.
	binsPerBlock = 128
)

// Sentinel errors of the package (besides psi's, which it also returns:
// psi.ErrProtocol, psi.ErrWrongSession, psi.ErrMismatch, psi.ErrAborted,
// psi.ErrMalformed).
var (
	// ErrUnsupportedMode reports a mode KKRT cannot offer: cardinality
	// only (see the package documentation).
	ErrUnsupportedMode = errors.New("kkrt: mode not supported by this protocol")
	// ErrNotReady reports a call that needs a phase that has not finished,
	// e.g. host tags before every extension batch arrived.
	ErrNotReady = errors.New("kkrt: phase not finished")
	// ErrCuckoo reports that no cuckoo table could be built in
	// maxCuckooAttempts seeds; with the parameters of this package each
	// attempt fails with probability below 2^-40.
	ErrCuckoo = errors.New("kkrt: cuckoo hashing failed")
)

// Bins returns the number of cuckoo bins for a guest set of n elements
// (rows; duplicates only lower the load): 0 for an empty set; for
// n ≤ 2^14, max(8192, ⌈1.6·n⌉), where an exact union bound over Hall
// violations is below 2^-40 (TestBinsUnionBound); above, ⌈e·n⌉ with
// e = (λ + 256 + ⌈log2 n⌉)/240, the stash-less 3-hash fit λ = 240·e −
// 256 − log2 n of Pinkas, Schneider, Weinert and Wieder (Eurocrypt 2018)
// as used by cryptoTools and SecretFlow: e ≈ 1.317 at 2^20, 1.333 at 2^24.
// Integer arithmetic only, so both parties agree on every platform.
func Bins(n int) int {
	switch {
	case n <= 0:
		return 0
	case n <= smallSet:
		return max(smallBins, (16*n+9)/10)
	}
	logN := bits.Len64(uint64(n - 1)) // ⌈log2 n⌉
	num := uint64(n) * uint64(statisticalBits+256+logN)
	return int((num + 239) / 240)
}

// TagBytes is the length of the OPRF values the host sends: psi.TagBytes,
// 40 + ⌈log2(n·m)⌉ bits rounded up to bytes. Each host value is compared
// only with guest values of the same hash index, so there are at most n·m
// comparisons and a false match has probability below 2^-40.
func TagBytes(n, m int) int { return psi.TagBytes(max(n, 1), max(m, 1)) }

// batchCount returns how many batches of per cover total.
func batchCount(total, per int) int {
	if total <= 0 {
		return 0
	}
	return (total + per - 1) / per
}

// batchRange returns the element range of batch b.
func batchRange(total, per, b int) (lo, hi int) {
	lo = b * per
	return lo, min(lo+per, total)
}

// roundBatch rounds a guest batch size up to a whole number of AES blocks
// of bins (128).
func roundBatch(n int) int {
	return (n + binsPerBlock - 1) / binsPerBlock * binsPerBlock
}

func checkSetSize(n int) error {
	if n < 0 || n > MaxSetSize {
		return fmt.Errorf("kkrt: set of %d identifiers, limit %d: %w", n, MaxSetSize, psi.ErrMalformed)
	}
	return nil
}
