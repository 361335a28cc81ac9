package secureboost

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Params are the cryptographic parameters of a session. The guest
// proposes them in Hello; a host checks them against its minimums.
type Params struct {
	// LogN is log2 of the ring degree N.
	LogN int `json:"log_n"`
	// Q are the RNS primes of the ciphertext modulus. There are no special
	// primes: nothing is key-switched, so there are no evaluation keys.
	Q []uint64 `json:"q"`
	// FloodBits is the statistical flooding of the noise in every sum a
	// host releases: the guest knows its own encryption noise, and the
	// noise of a bin sum is a sum of it over the bin's rows.
	FloodBits int `json:"flood_bits"`
	// PartSize is the most ciphertexts one Gradients or Histograms
	// message carries; a level's ciphertexts travel in as many parts as
	// needed (128 ≈ 25 MB).
	PartSize int `json:"part_size"`
}

// MinFloodBits is the least flooding a host accepts.
const MinFloodBits = 30

// maxLogQ is the largest ciphertext modulus with 128-bit security for a
// ternary secret and σ = 3.2 (HomomorphicEncryption.org standard, classical).
var maxLogQ = map[int]int{13: 218, 14: 438, 15: 881}

// DefaultParams returns N = 2^13 with three 60-bit primes (log Q = 180 ≤
// 218: 128-bit security) and 40 bits of flooding.
func DefaultParams() Params {
	q, _, err := rlwe.GenModuli(14, []int{60, 60, 60}, nil)
	if err != nil {
		panic(err) // fixed sizes: cannot fail
	}
	return Params{LogN: 13, Q: q, FloodBits: 40, PartSize: 128}
}

// LogQ returns log2 of the ciphertext modulus.
func (p Params) LogQ() float64 {
	var s float64
	for _, q := range p.Q {
		s += math.Log2(float64(q))
	}
	return s
}

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
	if len(p.Q) < 2 || len(p.Q) > 16 {
		return fmt.Errorf("%w: %d primes", ErrParams, len(p.Q))
	}
	for _, q := range p.Q {
		if q < 1<<40 || q >= 1<<61 {
			return fmt.Errorf("%w: prime %d outside 40..60 bits", ErrParams, q)
		}
	}
	if p.SecurityBits() < 128 {
		return fmt.Errorf("%w: log Q %.1f over %d for N = 2^%d (below 128-bit security)", ErrParams, p.LogQ(), maxLogQ[p.LogN], p.LogN)
	}
	if p.FloodBits < MinFloodBits || p.FloodBits > 80 {
		return fmt.Errorf("%w: noise flooding %d bits, want %d..80", ErrParams, p.FloodBits, MinFloodBits)
	}
	if p.PartSize < 1 || int64(p.PartSize)*int64(len(p.Q))<<(p.LogN+3) > MaxPayloadBytes/2 {
		return fmt.Errorf("%w: %d ciphertexts per message", ErrParams, p.PartSize)
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

// budget is the packing and noise plan of a session: the guest computes
// it from the parameters and public sizes, sends it in Setup, and every
// host recomputes and compares it.
type budget struct {
	// Stride is R: a gradient ciphertext holds R rows at coefficients
	// 0..R−1; a histogram ciphertext holds N/R bin sums at coefficients
	// 0, R, 2R, ...
	Stride int `json:"stride"`
	// Shift is s: a row's packed value is V = g·2^s + h (fixed point), and
	// a bin sum G·2^s + H with H decoded centred in (−2^(s−1), 2^(s−1)].
	Shift int `json:"shift"`
	// Alpha is the extra scale 2^α of every encrypted value, above the
	// noise and the flooding.
	Alpha int `json:"alpha"`
	// FloodLog2: hosts add uniform noise in [−2^F, 2^F) to every sum.
	FloodLog2 int `json:"flood_log2"`
	// NoiseBits bounds the hosts' optional histogram noise: |noise| <
	// 2^NoiseBits in fixed-point units (0: no host adds noise).
	NoiseBits int `json:"noise_bits"`
	// SlackBits is how far the largest value stays below Q/2.
	SlackBits int `json:"slack_bits"`
}

// Noise of the guest's encryptions and of a host's re-randomisation (see
// the package doc): both draw centred binomial errors (η = 21, σ ≈ 3.24,
// |e| ≤ cbdBound); a host's encryption of zero is u·pk + (e0, e1) with u
// ternary and pk's Gaussian error bounded by 6σ = 19.2.
const (
	cbdEta   = 21
	cbdBound = cbdEta
)

// planBudget sizes a session: rows training rows, gradBits fixed-point
// bits, stride R, noiseBits the hosts' noise bound (0: none).
func (p Params) planBudget(gradBits, rows, stride, noiseBits int) (budget, error) {
	if err := p.Validate(); err != nil {
		return budget{}, err
	}
	n := 1 << p.LogN
	if rows < 1 || rows > 1<<24 || stride < 16 || stride > n/2 || stride&(stride-1) != 0 {
		return budget{}, fmt.Errorf("%w: %d rows with stride %d", ErrParams, rows, stride)
	}
	if gradBits < MinGradientBits || gradBits > MaxGradientBits || noiseBits < 0 || noiseBits > 60 {
		return budget{}, fmt.Errorf("%w: gradient bits %d, noise bits %d", ErrParams, gradBits, noiseBits)
	}
	perCt := n / stride
	cmax := uint64(lr.MaxClassWeight)
	var noise uint64
	if noiseBits > 0 {
		noise = 1 << noiseBits
	}
	// |g_int| ≤ cmax·2^σ + 1 and 0 ≤ h_int ≤ (cmax/4)·2^σ + 1 per row.
	gmax := uint64(rows)*(cmax<<gradBits+1) + noise
	hmax := uint64(rows)*(cmax/4<<gradBits+1) + noise
	shift := bits.Len64(hmax) + 1
	vbits := bits.Len64(gmax) + shift + 1
	// Noise at a released coefficient: the guest's errors (centred
	// binomial, |e| ≤ 21) through ≤ rows·perCt plaintext terms, and the
	// re-randomisation u·e_pk + e0 + e1·s (e_pk Gaussian, |e_pk| ≤ 19.2).
	e := float64(rows)*float64(perCt)*cbdBound + float64(n)*(rlwe.DefaultNoiseBound+cbdBound) + cbdBound
	floodLog2 := int(math.Ceil(math.Log2(e))) + p.FloodBits
	alpha := floodLog2 + 2
	slack := int(math.Floor(p.LogQ())) - 1 - (alpha + vbits + 1)
	if slack < 0 {
		return budget{}, fmt.Errorf("%w: sums of %d bits at scale 2^%d do not fit Q of %.0f bits", ErrParams, vbits, alpha, p.LogQ())
	}
	return budget{Stride: stride, Shift: shift, Alpha: alpha, FloodLog2: floodLog2, NoiseBits: noiseBits, SlackBits: slack}, nil
}

// chooseStride picks the power-of-two stride that minimises the bytes of
// a root level: the guest sends rows/R ciphertexts to each host, each host
// returns about bins·R/N.
func chooseStride(logN, rows, hosts, totalBins int) int {
	n := 1 << logN
	best, bestCost := 0, math.Inf(1)
	for r := 16; r <= n/2; r <<= 1 {
		cost := float64(hosts)*math.Ceil(float64(rows)/float64(r)) + math.Ceil(float64(totalBins)*float64(r)/float64(n))
		if cost < bestCost {
			best, bestCost = r, cost
		}
	}
	return best
}

// noiseBitsFor returns the bound, in fixed-point bits, of histogram noise
// with standard deviation sigma (gradient units): 40σ, beyond which a
// draw is refused (probability below e^−800).
func noiseBitsFor(sigma float64, gradBits int) int {
	if sigma <= 0 {
		return 0
	}
	return int(math.Ceil(math.Log2(40 * sigma * math.Ldexp(1, gradBits))))
}

// crtBasis reconstructs integers mod Q = q_0·…·q_L from residues.
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

// centered returns the integer in (−Q/2, Q/2] with the given residues,
// using t as scratch.
func (b crtBasis) centered(res []uint64, v, t *big.Int) *big.Int {
	v.SetInt64(0)
	for j, r := range res {
		t.SetUint64(r)
		t.Mul(t, b.coef[j])
		v.Add(v, t)
	}
	v.Mod(v, b.Q)
	if v.Cmp(b.half) > 0 {
		v.Sub(v, b.Q)
	}
	return v
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

// mulmod returns a·b mod q.
func mulmod(a, b, q uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi%q, lo, q)
}

// smod returns v mod q in [0, q).
func smod(v int64, q uint64) uint64 {
	if v >= 0 {
		return uint64(v) % q
	}
	r := uint64(-v) % q
	if r == 0 {
		return 0
	}
	return q - r
}
