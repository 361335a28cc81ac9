package privacy

import (
	"fmt"
	"math"
)

// FracBits is the fixed-point resolution: a score s is represented as the
// integer round(s·2^FracBits).
const FracBits = 16

// fixedOne is 2^FracBits as a float64.
const fixedOne = float64(1 << FracBits)

// maxFixedScore bounds the scores ToFixed accepts, |s| < 2^(62−FracBits),
// so that a fixed-point value plus noise still fits an int64.
const maxFixedScore = float64(int64(1) << (62 - FracBits))

// ToFixed returns round(s·2^FracBits), rounding half away from zero. It
// fails with ErrInvalid for NaN, infinities and |s| ≥ 2^46.
func ToFixed(s float64) (int64, error) {
	if math.IsNaN(s) || math.Abs(s) >= maxFixedScore {
		return 0, fmt.Errorf("%w: score %v is not a finite number below 2^%d", ErrInvalid, s, 62-FracBits)
	}
	return int64(math.Round(s * fixedOne)), nil
}

// FromFixed returns v/2^FracBits. It is exact for |v| ≤ 2^53.
func FromFixed(v int64) float64 { return float64(v) / fixedOne }
