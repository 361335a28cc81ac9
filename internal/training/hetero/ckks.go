package hetero

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// suite is one party's view of the session's CKKS ring and fixed-point
// plan. Plaintexts are built directly as integer polynomials in RNS form
// (CKKS coefficient encoding with exact fixed-point integers), so that
// masks and their removal cancel exactly modulo Q.
type suite struct {
	p      Params
	params ckks.Parameters
	ringQ  *ring.Ring
	n      int
	top    int // level of the guest's ciphertexts
	out    int // level of returned ciphertexts
	lay    layout
	bud    budget
	crtOut crtBasis // Q_out
	crtTop crtBasis // Q
	pDrop  *big.Int // Q / Q_out
	alphaR []uint64 // 2^α mod q_j
}

func newSuite(p Params, maxBatch int) (*suite, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	params, err := ckks.NewParametersFromLiteral(p.literal())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParams, err)
	}
	lay, err := newLayout(params.N(), maxBatch)
	if err != nil {
		return nil, err
	}
	s := &suite{
		p: p, params: params, ringQ: params.RingQ(), n: params.N(),
		top: params.MaxLevel(), out: p.OutPrimes - 1, lay: lay,
		crtOut: newCRT(p.Q[:p.OutPrimes]), crtTop: newCRT(p.Q),
	}
	s.pDrop = new(big.Int).Quo(s.crtTop.Q, s.crtOut.Q)
	return s, nil
}

func (s *suite) setBudget(b budget) {
	s.bud = b
	s.alphaR = make([]uint64, len(s.p.Q))
	for j, q := range s.p.Q {
		s.alphaR[j] = pow2mod(b.Alpha, q)
	}
}

// guestPoly returns the NTT-domain plaintext at the top level with
// coefficient stride·jj + i = 2^α·v(i, jj) mod q_j for rows i < rows and
// columns jj < feats, where res(i, jj, j) = v(i, jj) mod q_j. With one
// column it is the batch's rows at coefficients 0..rows−1.
func (s *suite) guestPoly(rows, feats int, res func(i, jj, j int) uint64) ring.Poly {
	r := s.ringQ.AtLevel(s.top)
	p := r.NewPoly()
	for j, q := range s.p.Q {
		c := p.Coeffs[j]
		a := s.alphaR[j]
		for jj := 0; jj < feats; jj++ {
			off := jj * s.lay.Stride
			for i := 0; i < rows; i++ {
				c[off+i] = mulmod(res(i, jj, j), a, q)
			}
		}
	}
	r.NTT(p, p)
	return p
}

// rowsPoly is guestPoly for one column.
func (s *suite) rowsPoly(rows int, res func(i, j int) uint64) ring.Poly {
	return s.guestPoly(rows, 1, func(i, _, j int) uint64 { return res(i, j) })
}

// seeded is a symmetric-key ciphertext whose uniform half is regenerated
// from a public seed, so only c0 travels.
type seeded struct {
	Seed [32]byte
	C0   ring.Poly // NTT domain, top level
}

// encryptSeeded encrypts the NTT-domain plaintext pt under sk with a fresh
// public seed for the uniform part (the noise comes from crypto/rand via
// lattigo's default PRNG).
func (s *suite) encryptSeeded(enc *rlwe.Encryptor, pt ring.Poly) (seeded, *rlwe.Ciphertext, error) {
	var out seeded
	if _, err := rand.Read(out.Seed[:]); err != nil {
		return out, nil, err
	}
	prng, err := newCTRPRNG(out.Seed[:])
	if err != nil {
		return out, nil, err
	}
	ptx := rlwe.NewPlaintext(s.params, s.top)
	ptx.IsNTT = true
	ptx.Value = pt
	ct := rlwe.NewCiphertext(s.params, 1, s.top)
	if err := enc.WithPRNG(prng).Encrypt(ptx, ct); err != nil {
		return out, nil, err
	}
	out.C0 = ct.Value[0]
	return out, ct, nil
}

// expand regenerates the ciphertext of a seeded encryption.
func (s *suite) expand(sd seeded) (*rlwe.Ciphertext, error) {
	prng, err := newCTRPRNG(sd.Seed[:])
	if err != nil {
		return nil, err
	}
	ct := rlwe.NewCiphertext(s.params, 1, s.top)
	ct.Value[0].Copy(sd.C0)
	us := ringqp.NewUniformSampler(prng, *s.params.RingQP())
	us.AtLevel(s.top, -1).Read(ringqp.Poly{Q: ct.Value[1]})
	return ct, nil
}

// decryptAt returns the decryption (residues mod Q_out) of a returned
// ciphertext given its c1 (NTT domain) and its c0 at positions.
func (s *suite) decryptAt(sk *rlwe.SecretKey, c1 ring.Poly, c0 [][]uint64, pos []int) [][]uint64 {
	r := s.ringQ.AtLevel(s.out)
	t := r.NewPoly()
	r.MulCoeffsMontgomery(c1, sk.Value.Q, t)
	r.INTT(t, t)
	out := make([][]uint64, len(pos))
	for k, e := range pos {
		out[k] = make([]uint64, s.out+1)
		for j, q := range s.p.Q[:s.out+1] {
			v := c0[k][j] + t.Coeffs[j][e]
			if v >= q {
				v -= q
			}
			out[k][j] = v
		}
	}
	return out
}

// resultPositions are the coefficients holding a chunk's feats results.
func (s *suite) resultPositions(feats int) []int {
	pos := make([]int, feats)
	for jj := range pos {
		pos[jj] = jj * s.lay.Stride
	}
	return pos
}

// uniformResidues draws a uniform element of Z_{Q_out}, as residues, from
// crypto/rand (rejection sampling per prime).
func (s *suite) uniformResidues(out []uint64) error {
	var b [8]byte
	for j, q := range s.p.Q[:s.out+1] {
		mask := uint64(1)<<uint(bits.Len64(q)) - 1
		for {
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			v := binary.LittleEndian.Uint64(b[:]) & mask
			if v < q {
				out[j] = v
				break
			}
		}
	}
	return nil
}

// gradientScale returns the factor mapping a centred decrypted result to
// the real batch sum: P_drop / 2^(α+σ_x+γ+σ+2).
func (s *suite) gradientScale() *big.Float {
	f := new(big.Float).SetPrec(256).SetInt(s.pDrop)
	return f.SetMantExp(f, -s.p.unitLog2(s.bud.Alpha))
}

// toReal converts a centred result to float64 with scale.
func toReal(v *big.Int, scale *big.Float) float64 {
	f := new(big.Float).SetPrec(256).SetInt(v)
	f.Mul(f, scale)
	x, _ := f.Float64()
	return x
}

// ctrPRNG is AES-256-CTR keystream as a lattigo PRNG: the public seeds of
// the guest's ciphertexts expand with it (much faster than the default
// BLAKE2b XOF), and each host worker's encryption randomness comes from
// one keyed from crypto/rand.
type ctrPRNG struct{ s cipher.Stream }

func newCTRPRNG(key []byte) (*ctrPRNG, error) {
	blk, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, err
	}
	return &ctrPRNG{s: cipher.NewCTR(blk, make([]byte, aes.BlockSize))}, nil
}

func (p *ctrPRNG) Read(b []byte) (int, error) {
	clear(b)
	p.s.XORKeyStream(b, b)
	return len(b), nil
}
