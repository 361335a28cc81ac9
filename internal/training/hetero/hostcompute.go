package hetero

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// Re-randomisation noise: a host's fresh encryption of zero is
// (u·pk0 + e0, u·pk1 + e1) with u uniform ternary and e0, e1 centred
// binomial with η = 21 (σ ≈ 3.24, the σ of the guest's own Gaussian noise).
const (
	cbdEta   = 21
	cbdBound = cbdEta
)

// worker holds one goroutine's buffers and secret randomness for a host's
// ciphertext work. It is not safe for concurrent use.
type worker struct {
	s          *suite
	pk0, pk1   ring.Poly // NTT and Montgomery domain, output level
	rnd        *ctrPRNG  // keyed from crypto/rand
	buf        []byte
	p1, p2     ring.Poly // top level
	acc0, acc1 ring.Poly // top level
	u, z       ring.Poly // output level
	small      []int64
}

func (s *suite) newWorker(pk *rlwe.PublicKey) (*worker, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	rnd, err := newCTRPRNG(key[:])
	if err != nil {
		return nil, err
	}
	rt := s.ringQ.AtLevel(s.top)
	ro := s.ringQ.AtLevel(s.out)
	return &worker{
		s: s, pk0: pk.Value[0].Q, pk1: pk.Value[1].Q, rnd: rnd,
		buf: make([]byte, 8*s.n),
		p1:  rt.NewPoly(), p2: rt.NewPoly(), acc0: rt.NewPoly(), acc1: rt.NewPoly(),
		u: ro.NewPoly(), z: ro.NewPoly(), small: make([]int64, s.n),
	}, nil
}

// layout writes into dst the NTT-domain plaintext, in Montgomery form, of
// the batch columns off..off+f−1 of x: coefficient stride·jj − i
// (negacyclic) holds x(i, off+jj), times m_i when m is given (residues in
// Montgomery form, as [prime·rows + i]), negated when neg.
func (w *worker) layout(dst ring.Poly, x batchColumns, off, f int, m []uint64, neg bool) {
	s := w.s
	st := s.lay.Stride
	n := s.n
	b := x.rows
	for j, q := range s.p.Q {
		c := dst.Coeffs[j]
		clear(c)
		brc := s.ringQ.SubRings[j].BRedConstant
		var mj []uint64
		if m != nil {
			mj = m[j*b : (j+1)*b]
		}
		for jj := 0; jj < f; jj++ {
			col := x.col(off + jj)
			base := st * jj
			for i, xv := range col {
				var v uint64
				if mj != nil {
					v = ring.BRed(smod32(xv, q), mj[i], q, brc)
				} else {
					v = ring.MForm(smod32(xv, q), q, brc)
				}
				e := base - i
				flip := neg
				if e < 0 {
					e += n
					flip = !flip
				}
				if flip && v != 0 {
					v = q - v
				}
				c[e] = v
			}
		}
	}
	s.ringQ.AtLevel(s.top).NTT(dst, dst)
}

// layoutRows writes into dst the NTT-domain plaintext Σ_i m_i·X^(−i) of b
// rows (m in Montgomery form, as [prime·b + i]); the result is in
// Montgomery form too.
func (w *worker) layoutRows(dst ring.Poly, m []uint64, b int) {
	s := w.s
	for j, q := range s.p.Q {
		c := dst.Coeffs[j]
		clear(c)
		mj := m[j*b : (j+1)*b]
		c[0] = mj[0]
		for i := 1; i < b; i++ {
			if v := mj[i]; v != 0 {
				c[s.n-i] = q - v
			}
		}
	}
	s.ringQ.AtLevel(s.top).NTT(dst, dst)
}

// product sets acc = Σ_k pts[k]·cts[k] (NTT domain, top level; the
// plaintexts in Montgomery form).
func (w *worker) product(cts []*rlwe.Ciphertext, pts []ring.Poly) {
	r := w.s.ringQ.AtLevel(w.s.top)
	for k, ct := range cts {
		if k == 0 {
			r.MulCoeffsMontgomery(ct.Value[0], pts[k], w.acc0)
			r.MulCoeffsMontgomery(ct.Value[1], pts[k], w.acc1)
		} else {
			r.MulCoeffsMontgomeryThenAdd(ct.Value[0], pts[k], w.acc0)
			r.MulCoeffsMontgomeryThenAdd(ct.Value[1], pts[k], w.acc1)
		}
	}
}

// finish turns acc into what goes back to the guest and appends it to out
// in the result format: it switches acc down to the output level (dividing
// by the dropped primes with rounding) and adds a fresh public-key
// encryption of zero, so that the guest cannot relate the result to the
// randomness of its own ciphertexts (without it, c1 = Σ pt_k·a_k would
// reveal the host's plaintexts to the key holder). Only c0 at the result
// positions pos is sent; if masks is not nil, masks[k] (residues mod Q_out)
// is added to position k first.
func (w *worker) finish(pos []int, masks [][]uint64, out []byte) []byte {
	s := w.s
	rt := s.ringQ.AtLevel(s.top)
	rt.INTT(w.acc0, w.acc0)
	rt.INTT(w.acc1, w.acc1)
	for lvl := s.top; lvl > s.out; lvl-- {
		r := s.ringQ.AtLevel(lvl)
		c0 := ring.Poly{Coeffs: w.acc0.Coeffs[:lvl+1]}
		c1 := ring.Poly{Coeffs: w.acc1.Coeffs[:lvl+1]}
		r.DivRoundByLastModulus(c0, c0)
		r.DivRoundByLastModulus(c1, c1)
	}
	ro := s.ringQ.AtLevel(s.out)
	c0 := ring.Poly{Coeffs: w.acc0.Coeffs[:s.out+1]}
	c1 := ring.Poly{Coeffs: w.acc1.Coeffs[:s.out+1]}
	// u ternary; z = INTT(u·pk0).
	w.ternary(w.small)
	w.setSmall(w.u, w.small)
	ro.NTT(w.u, w.u)
	ro.MulCoeffsMontgomery(w.u, w.pk0, w.z)
	ro.INTT(w.z, w.z)
	ro.Add(c0, w.z, c0)
	w.cbd(w.small)
	w.addSmall(c0, w.small)
	w.cbd(w.small)
	w.addSmall(c1, w.small)
	ro.NTT(c1, c1)
	ro.MulCoeffsMontgomeryThenAdd(w.u, w.pk1, c1)
	for k, e := range pos {
		for j, q := range s.p.Q[:s.out+1] {
			v := c0.Coeffs[j][e]
			if masks != nil {
				v += masks[k][j]
				if v >= q {
					v -= q
				}
			}
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	}
	return putPoly(out, c1, s.out)
}

// ternary fills v with uniform values in {−1, 0, 1}.
func (w *worker) ternary(v []int64) {
	b := w.buf[:len(v)+len(v)/64+64]
	w.rnd.Read(b)
	k := 0
	for i := range v {
		for {
			if k == len(b) {
				w.rnd.Read(b)
				k = 0
			}
			x := b[k]
			k++
			if x < 255 {
				v[i] = int64(x%3) - 1
				break
			}
		}
	}
}

// cbd fills v with centred binomial values: popcount of 21 random bits
// minus popcount of 21 others.
func (w *worker) cbd(v []int64) {
	b := w.buf[:8*len(v)]
	w.rnd.Read(b)
	const mask = 1<<cbdEta - 1
	for i := range v {
		x := binary.LittleEndian.Uint64(b[8*i:])
		v[i] = int64(bits.OnesCount64(x&mask)) - int64(bits.OnesCount64((x>>cbdEta)&mask))
	}
}

// setSmall writes the small signed values v into p (output level).
func (w *worker) setSmall(p ring.Poly, v []int64) {
	for j, q := range w.s.p.Q[:w.s.out+1] {
		c := p.Coeffs[j][:len(v)]
		for i, x := range v {
			c[i] = uint64(x) + q&uint64(x>>63)
		}
	}
}

// addSmall adds the small signed values v to p (output level, coefficient
// domain).
func (w *worker) addSmall(p ring.Poly, v []int64) {
	for j, q := range w.s.p.Q[:w.s.out+1] {
		c := p.Coeffs[j][:len(v)]
		for i, x := range v {
			y := c[i] + uint64(x) + q&uint64(x>>63)
			if y >= q {
				y -= q
			}
			c[i] = y
		}
	}
}
