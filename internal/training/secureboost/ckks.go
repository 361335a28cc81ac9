package secureboost

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

// suite is one party's view of the session's ring and packing. Plaintexts
// are integer polynomials in RNS form (CKKS coefficient encoding with
// exact fixed-point integers, as the hetero-LR protocol builds them), so
// that bin sums come out exact.
type suite struct {
	p      Params
	params ckks.Parameters
	ringQ  *ring.Ring
	n      int
	top    int // the level of every ciphertext (no level is ever dropped)
	crt    crtBasis
	bud    budget
	perCt  int      // bin sums per histogram ciphertext: N / stride
	alphaR []uint64 // 2^α mod q_j
	shiftR []uint64 // 2^s mod q_j
	floodR []uint64 // 2^F mod q_j (F = FloodLog2)
	mOne   []uint64 // 1 in Montgomery form, mod q_j
}

func newSuite(p Params) (*suite, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	params, err := ckks.NewParametersFromLiteral(p.literal())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParams, err)
	}
	s := &suite{p: p, params: params, ringQ: params.RingQ(), n: params.N(), top: params.MaxLevel(), crt: newCRT(p.Q)}
	for j, q := range p.Q {
		s.mOne = append(s.mOne, ring.MForm(1, q, s.ringQ.SubRings[j].BRedConstant))
	}
	return s, nil
}

func (s *suite) setBudget(b budget) {
	s.bud = b
	s.perCt = s.n / b.Stride
	s.alphaR = make([]uint64, len(s.p.Q))
	s.shiftR = make([]uint64, len(s.p.Q))
	s.floodR = make([]uint64, len(s.p.Q))
	for j, q := range s.p.Q {
		s.alphaR[j] = pow2mod(b.Alpha, q)
		s.shiftR[j] = pow2mod(b.Shift, q)
		s.floodR[j] = pow2mod(b.FloodLog2, q)
	}
}

// packed returns 2^α·(g·2^s + h) mod q_j.
func (s *suite) packed(g, h int64, j int) uint64 {
	q := s.p.Q[j]
	v := mulmod(smod(g, q), s.shiftR[j], q) + smod(h, q)
	if v >= q {
		v -= q
	}
	return mulmod(v, s.alphaR[j], q)
}

// seeded is a symmetric-key ciphertext whose uniform half is regenerated
// from a public seed, so only c0 travels.
type seeded struct {
	Seed [32]byte
	C0   ring.Poly // NTT domain
}

// encrypter encrypts a guest's rows under its secret key. It is not safe
// for concurrent use; each worker has its own.
type encrypter struct {
	s     *suite
	sk    *rlwe.SecretKey
	noise *ctrPRNG // keyed from crypto/rand
	buf   []byte
	a     ring.Poly
}

func (s *suite) newEncrypter(sk *rlwe.SecretKey) (*encrypter, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	noise, err := newCTRPRNG(key[:])
	if err != nil {
		return nil, err
	}
	return &encrypter{s: s, sk: sk, noise: noise, buf: make([]byte, 8*s.n), a: s.ringQ.AtLevel(s.top).NewPoly()}, nil
}

// encryptRows encrypts 2^α·(g_i·2^s + h_i) at coefficient i for the given
// rows, under the secret key: c1 = a, uniform from a fresh public seed
// (AES-CTR, as expand regenerates it), and c0 = −a·s + NTT(m + e) with e
// centred binomial (η = 21, σ ≈ 3.24) from a stream keyed from
// crypto/rand. It is lattigo's symmetric RLWE encryption (the tests
// decrypt it with lattigo's Decryptor), with one NTT instead of three.
func (e *encrypter) encryptRows(rows []int32, gq, hq []int64) (seeded, error) {
	s := e.s
	var out seeded
	if _, err := rand.Read(out.Seed[:]); err != nil {
		return out, err
	}
	prng, err := newCTRPRNG(out.Seed[:])
	if err != nil {
		return out, err
	}
	ringqp.NewUniformSampler(prng, *s.params.RingQP()).AtLevel(s.top, -1).Read(ringqp.Poly{Q: e.a})
	r := s.ringQ.AtLevel(s.top)
	c0 := r.NewPoly()
	e.noise.Read(e.buf)
	const mask = 1<<cbdEta - 1
	for j, q := range s.p.Q {
		c := c0.Coeffs[j]
		for i := range c {
			x := binary.LittleEndian.Uint64(e.buf[8*i:])
			v := int64(bits.OnesCount64(x&mask)) - int64(bits.OnesCount64((x>>cbdEta)&mask))
			c[i] = uint64(v) + q&uint64(v>>63)
		}
		for i, row := range rows {
			c[i] = addmod(c[i], s.packed(gq[row], hq[row], j), q)
		}
	}
	r.NTT(c0, c0)
	r.MulCoeffsMontgomeryThenSub(e.a, e.sk.Value.Q, c0)
	out.C0 = c0
	return out, nil
}

// expand regenerates the ciphertext of a seeded encryption into ct.
func (s *suite) expand(sd seeded, ct *rlwe.Ciphertext) error {
	prng, err := newCTRPRNG(sd.Seed[:])
	if err != nil {
		return err
	}
	ct.Value[0].Copy(sd.C0)
	us := ringqp.NewUniformSampler(prng, *s.params.RingQP())
	us.AtLevel(s.top, -1).Read(ringqp.Poly{Q: ct.Value[1]})
	return nil
}

// decoder turns decrypted bin sums into (G, H). It is not safe for
// concurrent use.
type decoder struct {
	s       *suite
	half    *big.Int // 2^(α−1)
	mask    *big.Int // 2^s − 1
	hHalf   *big.Int // 2^(s−1)
	hFull   *big.Int // 2^s
	v, t, h *big.Int
	res     []uint64
	tmp     ring.Poly
}

func (s *suite) newDecoder() *decoder {
	one := big.NewInt(1)
	return &decoder{
		s:     s,
		half:  new(big.Int).Lsh(one, uint(s.bud.Alpha-1)),
		mask:  new(big.Int).Sub(new(big.Int).Lsh(one, uint(s.bud.Shift)), one),
		hHalf: new(big.Int).Lsh(one, uint(s.bud.Shift-1)),
		hFull: new(big.Int).Lsh(one, uint(s.bud.Shift)),
		v:     new(big.Int), t: new(big.Int), h: new(big.Int),
		res: make([]uint64, len(s.p.Q)),
		tmp: s.ringQ.AtLevel(s.top).NewPoly(),
	}
}

// decrypt decrypts one histogram ciphertext (c0 at the first cnt result
// positions, c1 whole) into G and H.
func (d *decoder) decrypt(sk *rlwe.SecretKey, r hresult, G, H []int64) error {
	s := d.s
	rt := s.ringQ.AtLevel(s.top)
	rt.MulCoeffsMontgomery(r.C1, sk.Value.Q, d.tmp)
	rt.INTT(d.tmp, d.tmp)
	for o := range r.count {
		pos := o * s.bud.Stride
		for j, q := range s.p.Q {
			v := r.C0[o*len(s.p.Q)+j] + d.tmp.Coeffs[j][pos]
			if v >= q {
				v -= q
			}
			d.res[j] = v
		}
		g, h, err := d.unpack(s.crt.centered(d.res, d.v, d.t))
		if err != nil {
			return err
		}
		G[o], H[o] = g, h
	}
	return nil
}

// unpack rounds v/2^α and splits it into G·2^s + H (H centred).
func (d *decoder) unpack(v *big.Int) (int64, int64, error) {
	v.Add(v, d.half)
	v.Rsh(v, uint(d.s.bud.Alpha)) // floor: round half up
	d.h.And(v, d.mask)
	if d.h.Cmp(d.hHalf) >= 0 {
		d.h.Sub(d.h, d.hFull)
	}
	v.Sub(v, d.h)
	v.Rsh(v, uint(d.s.bud.Shift))
	if !v.IsInt64() || !d.h.IsInt64() {
		return 0, 0, fmt.Errorf("%w: a decrypted sum is out of range", ErrBound)
	}
	return v.Int64(), d.h.Int64(), nil
}

// ctrPRNG is AES-256-CTR keystream as a lattigo PRNG: public seeds of the
// guest's ciphertexts expand with it, and each host worker's secret
// randomness comes from one keyed from crypto/rand.
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

func (p *ctrPRNG) uint64() uint64 {
	var b [8]byte
	p.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
