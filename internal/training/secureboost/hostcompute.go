package secureboost

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// The host's histogram arithmetic.
//
// A gradient ciphertext C of the guest holds rows i = 0..R−1 of a node
// (R = stride) at coefficients i: 2^α·(g_i·2^s + h_i). A group of the
// host's flat (feature, bin) outputs o = 0..N/R−1 is laid out as the 0/1
// plaintext P = Σ_i ±X^(o(i)·R − i) (negacyclic: a negative exponent
// wraps with a sign), one term per row and feature of the group. In C·P
// the coefficient o·R collects exactly the rows of output o, since any
// other pair of a row and a term lands at a distance below R from it; the
// products of a node's ciphertexts are summed, so one histogram
// ciphertext carries N/R bin sums of the whole node. Only those
// coefficients leave the host, re-randomised and flooded.

// worker holds one goroutine's buffers and secret randomness for a host's
// ciphertext work. It is not safe for concurrent use.
type worker struct {
	s          *suite
	pk0, pk1   ring.Poly // NTT and Montgomery domain
	rnd        *ctrPRNG  // keyed from crypto/rand
	buf        []byte
	pt         ring.Poly
	acc0, acc1 ring.Poly
	u, e       ring.Poly
	small      []int64
	ct         *rlwe.Ciphertext
	fresh      bool // acc holds nothing yet
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
	r := s.ringQ.AtLevel(s.top)
	return &worker{
		s: s, pk0: pk.Value[0].Q, pk1: pk.Value[1].Q, rnd: rnd,
		buf: make([]byte, 8*s.n),
		pt:  r.NewPoly(), acc0: r.NewPoly(), acc1: r.NewPoly(), u: r.NewPoly(), e: r.NewPoly(),
		small: make([]int64, s.n), ct: rlwe.NewCiphertext(s.params, 1, s.top), fresh: true,
	}, nil
}

// group is a range [lo, hi) of a host's flat (feature, bin) outputs that
// one histogram ciphertext carries, and the features it touches.
type group struct {
	lo, hi         int
	firstF, afterF int
}

func groups(lay histLayout, perCt int) []group {
	var out []group
	for lo := 0; lo < lay.total; lo += perCt {
		g := group{lo: lo, hi: min(lo+perCt, lay.total), firstF: -1}
		for f := range lay.nbins {
			if lay.offs[f] < g.hi && lay.offs[f]+lay.nbins[f] > g.lo {
				if g.firstF < 0 {
					g.firstF = f
				}
				g.afterF = f + 1
			}
		}
		out = append(out, g)
	}
	return out
}

// layout writes into pt the NTT-domain plaintext (Montgomery form) of a
// chunk's rows for group g.
func (w *worker) layout(pt ring.Poly, m *binned, rows []int32, g group) {
	s := w.s
	st := s.bud.Stride
	n := s.n
	for j := range s.p.Q {
		clear(pt.Coeffs[j])
	}
	for f := g.firstF; f < g.afterF; f++ {
		col := m.col(f)
		base := m.offs[f] - g.lo
		for i, r := range rows {
			o := base + int(col[r])
			if o < 0 || o >= g.hi-g.lo {
				continue
			}
			e := o*st - i
			neg := false
			if e < 0 {
				e += n
				neg = true
			}
			for j, q := range s.p.Q {
				v := s.mOne[j]
				if neg {
					v = q - v
				}
				pt.Coeffs[j][e] = v
			}
		}
	}
	s.ringQ.AtLevel(s.top).NTT(pt, pt)
}

// accumulate adds ct·pt (pt NTT-domain, Montgomery form) to the
// accumulator.
func (w *worker) accumulate(ct *rlwe.Ciphertext, pt ring.Poly) {
	r := w.s.ringQ.AtLevel(w.s.top)
	if w.fresh {
		r.MulCoeffsMontgomery(ct.Value[0], pt, w.acc0)
		r.MulCoeffsMontgomery(ct.Value[1], pt, w.acc1)
		w.fresh = false
		return
	}
	r.MulCoeffsMontgomeryThenAdd(ct.Value[0], pt, w.acc0)
	r.MulCoeffsMontgomeryThenAdd(ct.Value[1], pt, w.acc1)
}

// addend is what a host adds to a released sum besides its flooding:
// optional noise on G and H (fixed point).
type addend struct{ g, h int64 }

// finish turns the accumulator into a histogram ciphertext of count sums
// and appends it to out: c0 at the result positions (coefficient domain)
// with, at each, uniform flooding in [−2^F, 2^F) and the optional noise,
// then c1 whole (NTT domain). It re-randomises with a fresh public-key
// encryption of zero u·pk + (e0, e1), so the guest cannot relate c1 to its
// own ciphertexts (c1 = Σ C1·P would otherwise reveal the plaintexts P).
func (w *worker) finish(count int, noise []addend, out []byte) []byte {
	s := w.s
	r := s.ringQ.AtLevel(s.top)
	if w.fresh { // a node without rows: an encryption of zero
		for j := range s.p.Q {
			clear(w.acc0.Coeffs[j])
			clear(w.acc1.Coeffs[j])
		}
	}
	w.ternary(w.small)
	w.setSmall(w.u, w.small)
	r.NTT(w.u, w.u)
	r.MulCoeffsMontgomeryThenAdd(w.u, w.pk0, w.acc0)
	r.MulCoeffsMontgomeryThenAdd(w.u, w.pk1, w.acc1)
	w.cbd(w.small)
	w.setSmall(w.e, w.small)
	r.NTT(w.e, w.e)
	r.Add(w.acc1, w.e, w.acc1)
	r.INTT(w.acc0, w.acc0)
	var b16 [16]byte
	fl := s.bud.FloodLog2 + 1 // bits of the uniform draw in [0, 2^(F+1))
	for o := 0; o < count; o++ {
		pos := o * s.bud.Stride
		w.rnd.Read(b16[:])
		hi, lo := binary.LittleEndian.Uint64(b16[:8]), binary.LittleEndian.Uint64(b16[8:])
		if fl < 64 {
			hi, lo = 0, lo&(1<<uint(fl)-1)
		} else {
			hi &= 1<<uint(fl-64) - 1
		}
		e0 := w.cbdOne()
		for j, q := range s.p.Q {
			// flooding (u − 2^F) plus e0, then the noise
			f := bits.Rem64(hi%q, lo, q)
			f = submod(f, s.floodR[j], q)
			v := addmod(w.acc0.Coeffs[j][pos], f, q)
			v = addmod(v, smod(e0, q), q)
			if noise != nil {
				v = addmod(v, s.packed(noise[o].g, noise[o].h, j), q)
			}
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	}
	for j := range s.p.Q {
		for _, v := range w.acc1.Coeffs[j] {
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	}
	w.fresh = true
	return out
}

func addmod(a, b, q uint64) uint64 {
	v := a + b
	if v >= q {
		v -= q
	}
	return v
}

func submod(a, b, q uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + q - b
}

// ternary fills v with uniform values in {−1, 0, 1}.
func (w *worker) ternary(v []int64) {
	b := w.buf[:len(v)]
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

func (w *worker) cbdOne() int64 {
	const mask = 1<<cbdEta - 1
	x := w.rnd.uint64()
	return int64(bits.OnesCount64(x&mask)) - int64(bits.OnesCount64((x>>cbdEta)&mask))
}

// setSmall writes the small signed values v into p (coefficient domain).
func (w *worker) setSmall(p ring.Poly, v []int64) {
	for j, q := range w.s.p.Q {
		c := p.Coeffs[j][:len(v)]
		for i, x := range v {
			c[i] = uint64(x) + q&uint64(x>>63)
		}
	}
}
