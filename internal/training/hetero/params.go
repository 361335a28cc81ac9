package hetero

import (
	"fmt"
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Params are the cryptographic and fixed-point parameters of a session.
// The guest proposes them in Hello; a host checks them against its own
// minimums before using them.
type Params struct {
	// LogN is log2 of the ring degree N.
	LogN int `json:"log_n"`
	// Q are the RNS primes of the ciphertext modulus (no special primes:
	// the protocol needs no key switching, so there are no evaluation
	// keys).
	Q []uint64 `json:"q"`
	// OutPrimes is how many primes the ciphertexts a host sends back keep
	// after modulus switching.
	OutPrimes int `json:"out_primes"`
	// ScoreBits, FeatureBits and WeightBits are the fractional bits of the
	// fixed-point scores, features and class weights.
	ScoreBits   int `json:"score_bits"`
	FeatureBits int `json:"feature_bits"`
	WeightBits  int `json:"weight_bits"`
	// ScoreBoundBits bounds every party's partial score: |u| < 2^ScoreBoundBits.
	ScoreBoundBits int `json:"score_bound_bits"`
	// FeatureBoundBits bounds every standardised feature: |x| < 2^FeatureBoundBits.
	FeatureBoundBits int `json:"feature_bound_bits"`
	// MaskBits is the statistical hiding of the score masks: a mask is
	// uniform on [0, 2^(ScoreBits+ScoreBoundBits+MaskBits)).
	MaskBits int `json:"mask_bits"`
	// FloodBits is the statistical flooding of the noise in values the
	// guest decrypts for a host (against key recovery from decryptions).
	FloodBits int `json:"flood_bits"`
}

// Minimums a host insists on.
const (
	MinMaskBits  = 40
	MinFloodBits = 30
)

// maxLogQ is the largest ciphertext modulus with 128-bit security for a
// ternary secret and σ = 3.2 (HomomorphicEncryption.org standard, classical).
var maxLogQ = map[int]int{13: 218, 14: 438, 15: 881}

// DefaultParams returns the parameters for a run with the given number of
// hosts: N = 2^13 and, with one host, three 60-bit primes (log Q = 180),
// with several, four 54-bit primes (log Q = 216, the additive score masks
// need the room); both ≤ 218, i.e. 128-bit security. Results come back on
// two primes; 40 bits of mask hiding (several hosts) and of noise
// flooding.
func DefaultParams(hosts int) Params {
	sizes := []int{54, 54, 54, 54}
	if hosts <= 1 {
		sizes = []int{60, 60, 60}
	}
	q, _, err := rlwe.GenModuli(14, sizes, nil)
	if err != nil {
		panic(err) // fixed sizes: cannot fail
	}
	return Params{
		LogN: 13, Q: q, OutPrimes: 2,
		ScoreBits: 24, FeatureBits: 20, WeightBits: 20,
		ScoreBoundBits: 6, FeatureBoundBits: 8,
		MaskBits: 40, FloodBits: 40,
	}
}

// modularMasks reports whether score masks are modular: with one host, the
// host sends (u + m) mod T with m uniform modulo T = 2^(σ+B_u+1), which
// hides u perfectly, and removes s − u (which it knows) instead of m. With
// several hosts every host must remove the total mask, so the masks are
// additive, uniform on [0, 2^μ), and hide statistically (MaskBits).
func modularMasks(hosts int) bool { return hosts == 1 }

// scoreMaskBits is the width of the score masks of a run.
func (p Params) scoreMaskBits(hosts int) int {
	if modularMasks(hosts) {
		return p.ScoreBits + p.ScoreBoundBits + 1
	}
	return p.MaskRangeBits()
}

// LogQ returns log2 of the ciphertext modulus.
func (p Params) LogQ() float64 {
	var s float64
	for _, q := range p.Q {
		s += math.Log2(float64(q))
	}
	return s
}

// MaskRangeBits is μ: additive score masks (several hosts) are uniform on
// [0, 2^μ).
func (p Params) MaskRangeBits() int { return p.ScoreBits + p.ScoreBoundBits + p.MaskBits }

// SecurityBits returns the classical security level of the ring (128) or 0
// if the modulus is too large for N.
func (p Params) SecurityBits() int {
	if m, ok := maxLogQ[p.LogN]; ok && p.LogQ() <= float64(m) {
		return 128
	}
	return 0
}

// Validate checks the parameters a party can check without the data.
func (p Params) Validate() error {
	if _, ok := maxLogQ[p.LogN]; !ok {
		return fmt.Errorf("%w: log N %d not in 13..15", ErrParams, p.LogN)
	}
	if len(p.Q) < 2 || len(p.Q) > 16 || p.OutPrimes < 1 || p.OutPrimes >= len(p.Q) {
		return fmt.Errorf("%w: %d primes with %d kept in results", ErrParams, len(p.Q), p.OutPrimes)
	}
	for _, q := range p.Q {
		if q < 1<<40 || q >= 1<<61 {
			return fmt.Errorf("%w: prime %d outside 40..60 bits", ErrParams, q)
		}
	}
	if p.SecurityBits() < 128 {
		return fmt.Errorf("%w: log Q %.1f over %d for N = 2^%d (below 128-bit security)", ErrParams, p.LogQ(), maxLogQ[p.LogN], p.LogN)
	}
	if p.MaskBits < MinMaskBits || p.MaskBits > 60 {
		return fmt.Errorf("%w: mask hiding %d bits, want %d..60", ErrParams, p.MaskBits, MinMaskBits)
	}
	if p.FloodBits < MinFloodBits || p.FloodBits > 80 {
		return fmt.Errorf("%w: noise flooding %d bits, want %d..80", ErrParams, p.FloodBits, MinFloodBits)
	}
	in := func(v, lo, hi int) bool { return v >= lo && v <= hi }
	if !in(p.ScoreBits, 8, 32) || !in(p.FeatureBits, 8, 32) || !in(p.WeightBits, 8, 32) ||
		!in(p.ScoreBoundBits, 1, 16) || !in(p.FeatureBoundBits, 1, 16) {
		return fmt.Errorf("%w: fixed-point sizes out of range", ErrParams)
	}
	if p.MaskRangeBits() > 100 {
		return fmt.Errorf("%w: score masks of %d bits do not fit the 128-bit encoding", ErrParams, p.MaskRangeBits())
	}
	if _, err := ckks.NewParametersFromLiteral(p.literal()); err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	return nil
}

func (p Params) literal() ckks.ParametersLiteral {
	return ckks.ParametersLiteral{
		LogN:            p.LogN,
		Q:               p.Q,
		Xs:              rlwe.DefaultXs,
		Xe:              rlwe.DefaultXe,
		RingType:        ring.Standard,
		LogDefaultScale: 40,
	}
}

// layout is the packing of a session: rows of a batch go to coefficients
// 0..b−1 of the guest's ciphertexts; a host's plaintext puts feature j of
// its chunk at stride·j, so one ciphertext–plaintext product yields
// PerCt inner products at coefficients 0, stride, 2·stride, ...
type layout struct {
	Stride int // power of two ≥ the largest batch
	PerCt  int // features per ciphertext: N / Stride
}

func newLayout(n, maxBatch int) (layout, error) {
	st := 1
	for st < maxBatch {
		st <<= 1
	}
	if st > n {
		return layout{}, fmt.Errorf("%w: batch of %d rows exceeds the ring degree %d", ErrParams, maxBatch, n)
	}
	return layout{Stride: st, PerCt: n / st}, nil
}

// budget is the fixed-point and noise plan of a session, computed by the
// guest from the parameters and the public sizes, sent in Hello, and
// re-checked by every host.
type budget struct {
	// Alpha is the extra scale 2^Alpha of the guest's ciphertexts.
	Alpha int `json:"alpha"`
	// FloodLog2 is log2 of the flooding noise bound the guest adds to
	// every value it decrypts for a host.
	FloodLog2 int `json:"flood_log2"`
	// ErrorLog2 bounds log2 of the absolute error of a decrypted batch
	// gradient sum Σ_i x_ij·d_i (fixed-point, noise and flooding).
	ErrorLog2 float64 `json:"error_log2"`
	// HeadroomBits is how far the largest result stays below Q_out/2.
	HeadroomBits float64 `json:"headroom_bits"`
}

// unitLog2 is the number of fractional bits of a decrypted gradient sum
// before modulus switching: α + σ_x + γ + σ + 2.
func (p Params) unitLog2(alpha int) int {
	return alpha + p.FeatureBits + p.WeightBits + p.ScoreBits + 2
}

// planBudget sizes α and the flooding for a session of the given shape, or
// explains why the parameters cannot hold it. hosts is the number of hosts,
// maxBatch the largest batch, perCt the features per ciphertext.
func (p Params) planBudget(hosts, maxBatch, perCt int) (budget, error) {
	if err := p.Validate(); err != nil {
		return budget{}, err
	}
	if hosts < 1 || maxBatch < 1 || perCt < 1 {
		return budget{}, fmt.Errorf("%w: %d hosts, batches of %d, %d features per ciphertext", ErrParams, hosts, maxBatch, perCt)
	}
	log2 := math.Log2
	n := float64(int(1) << p.LogN)
	logQ := p.LogQ()
	var logQout float64
	for _, q := range p.Q[:p.OutPrimes] {
		logQout += log2(float64(q))
	}
	logDrop := logQ - logQout
	k := float64(hosts)
	// |2 + u_A + Σu_h − 4y| ≤ 6 + (k+1)·2^B_u, in units of 2^−σ.
	logV := log2(6+(k+1)*math.Exp2(float64(p.ScoreBoundBits))) + float64(p.ScoreBits)
	logC := float64(p.WeightBits) + log2(lr.MaxClassWeight)
	logX := float64(p.FeatureBits + p.FeatureBoundBits)
	logG := log2(float64(maxBatch)) + logX + logC + logV // |Σ x_int·d_int|
	logM := float64(p.MaskRangeBits()) + log2(k)         // |Σ_h m_h|
	if modularMasks(hosts) {
		logM = float64(p.scoreMaskBits(hosts)) + 1 // |s − u| < 1.5·T
	}
	// Noise of [[X·d']] − [[X⊙m · c]] before switching: 19.2·(‖P1‖₁ + ‖P2‖₁),
	// and of [[(c⊙X_A)ᵀ m]]: 19.2·‖P3‖₁ (smaller).
	logE := log2(rlwe.DefaultNoiseBound) + log2(float64(perCt*maxBatch)) + logX + log2(1+math.Exp2(logM))
	alpha := int(math.Floor(logQ - 2 - logG - 1))
	if alpha < 1 {
		return budget{}, fmt.Errorf("%w: Q of %.0f bits cannot hold gradients of %.0f bits", ErrParams, logQ, logG)
	}
	// After switching: E/P_drop, rounding (≤ N), re-randomisation
	// (u·e_pk + e0 + e1·s ≤ 19.2·N + 21 + 21·N for ternary u and s).
	ePrime := math.Exp2(logE-logDrop) + n + rlwe.DefaultNoiseBound*n + cbdBound*(n+1)
	floodLog2 := p.FloodBits + int(math.Ceil(log2(ePrime)))
	top := float64(alpha) + logG - logDrop
	largest := log2(math.Exp2(top) + math.Exp2(float64(floodLog2)) + ePrime)
	headroom := logQout - 1 - largest
	if headroom < 1 {
		return budget{}, fmt.Errorf("%w: returned results need %.0f bits, Q_out has %.0f", ErrParams, largest+2, logQout)
	}
	errLog2 := log2(math.Exp2(float64(floodLog2))+ePrime) + logDrop - float64(p.unitLog2(alpha))
	if errLog2 > -12 {
		return budget{}, fmt.Errorf("%w: gradient error 2^%.1f is too large (use more or larger primes)", ErrParams, errLog2)
	}
	return budget{Alpha: alpha, FloodLog2: floodLog2, ErrorLog2: errLog2, HeadroomBits: headroom}, nil
}

// checkBudget verifies that b is the budget of the parameters for the
// shape (what a host does with the guest's proposal).
func (p Params) checkBudget(b budget, hosts, maxBatch, perCt int) error {
	want, err := p.planBudget(hosts, maxBatch, perCt)
	if err != nil {
		return err
	}
	if b.Alpha != want.Alpha || b.FloodLog2 != want.FloodLog2 {
		return fmt.Errorf("%w: the guest's noise budget (α %d, flooding 2^%d) differs from this host's (α %d, flooding 2^%d)",
			ErrParams, b.Alpha, b.FloodLog2, want.Alpha, want.FloodLog2)
	}
	return nil
}

// crtBasis reconstructs integers mod Q_L = q_0·…·q_L from residues.
type crtBasis struct {
	moduli []uint64
	Q      *big.Int
	half   *big.Int
	coef   []*big.Int // (Q/q_j)·((Q/q_j)^−1 mod q_j)
}

func newCRT(moduli []uint64) crtBasis {
	b := crtBasis{moduli: moduli, Q: big.NewInt(1)}
	for _, q := range moduli {
		b.Q.Mul(b.Q, new(big.Int).SetUint64(q))
	}
	b.half = new(big.Int).Rsh(b.Q, 1)
	for _, q := range moduli {
		qj := new(big.Int).SetUint64(q)
		qhat := new(big.Int).Quo(b.Q, qj)
		inv := new(big.Int).ModInverse(new(big.Int).Mod(qhat, qj), qj)
		b.coef = append(b.coef, new(big.Int).Mul(qhat, inv))
	}
	return b
}

// combine returns the integer in [0, Q) with the given residues.
func (b crtBasis) combine(res []uint64) *big.Int {
	v := new(big.Int)
	t := new(big.Int)
	for j, r := range res {
		t.SetUint64(r)
		t.Mul(t, b.coef[j])
		v.Add(v, t)
	}
	return v.Mod(v, b.Q)
}

// centered maps v in [0, Q) to (−Q/2, Q/2].
func (b crtBasis) centered(v *big.Int) *big.Int {
	if v.Cmp(b.half) > 0 {
		return v.Sub(v, b.Q)
	}
	return v
}

// residues writes v mod q_j into out.
func (b crtBasis) residues(v *big.Int, out []uint64) {
	t := new(big.Int)
	for j, q := range b.moduli {
		out[j] = t.Mod(v, new(big.Int).SetUint64(q)).Uint64()
	}
}

// pow2mod returns 2^e mod q.
func pow2mod(e int, q uint64) uint64 {
	r := uint64(1) % q
	b := uint64(2) % q
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = mulmod(r, b, q)
		}
		b = mulmod(b, b, q)
	}
	return r
}
