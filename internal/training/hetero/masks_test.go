package hetero

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// TestScoreMaskRange checks that score masks are uniform on [0, 2^μ) with
// μ = ScoreBits + ScoreBoundBits + MaskBits, i.e. at least 2^40 times the
// largest fixed-point partial score they hide.
func TestScoreMaskRange(t *testing.T) {
	p := DefaultParams(2)
	mu := p.MaskRangeBits()
	if hiding := mu - (p.ScoreBits + p.ScoreBoundBits); hiding < 40 {
		t.Fatalf("masks hide with %d bits", hiding)
	}
	var k maskKey
	rand.Read(k.seed[:])
	k.session = "s"
	m, err := k.scoreMasks(3, 7, 1, 20000, mu)
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	limit := new(big.Int).Lsh(big.NewInt(1), uint(mu))
	for _, v := range m {
		if v.isNeg() || v.big().Cmp(limit) >= 0 {
			t.Fatalf("mask %v outside [0, 2^%d)", v.big(), mu)
		}
		if v.bitLen() == mu {
			top++
		}
	}
	if f := float64(top) / float64(len(m)); f < 0.47 || f > 0.53 {
		t.Fatalf("top bit set in %.3f of the masks, want ≈ 0.5", f)
	}
	// Deterministic from the seed, different per (epoch, batch, host).
	again, _ := k.scoreMasks(3, 7, 1, 4, mu)
	other, _ := k.scoreMasks(3, 7, 2, 4, mu)
	if again[0] != m[0] || other[0] == m[0] {
		t.Fatal("masks not keyed by (epoch, batch, host)")
	}
	if p.MaskBits = 39; p.Validate() == nil {
		t.Fatal("39 bits of mask hiding accepted")
	}
}

// TestScoresOnTheWireAreMasked records runs and checks that every masked
// score a host sends lies in the mask range, far above the score range:
// with one host uniform modulo 2^31, with two uniform up to 2^70.
func TestScoresOnTheWireAreMasked(t *testing.T) {
	gfull, hfull := credit(t)
	tabs := subset(2000, gfull, hfull)
	a, b := splitHost(tabs[1], 4)
	for _, hts := range [][]*dataset.Table{{tabs[1]}, {a, b}} {
		t.Run(fmt.Sprintf("%d hosts", len(hts)), func(t *testing.T) {
			cfg := lr.DefaultConfig()
			cfg.Epochs, cfg.Patience = 1, 0
			rec := NewRecorder(true)
			_, err := runFed(context.Background(), tabs[0], hts, GuestConfig{Train: cfg, Split: dataset.DefaultSplit()},
				fedOpts{wrap: func(h int, tr Transport) Transport { return rec.Wrap(tr, "host", GuestToHost) }})
			if err != nil {
				t.Fatal(err)
			}
			p := DefaultParams(len(hts))
			mu := p.scoreMaskBits(len(hts))
			var n, high int
			for _, r := range rec.Records() {
				if r.Message.Type != MsgScores {
					continue
				}
				v, err := decodeScores(r.Message.Payload, len(r.Message.Payload)/16)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range v {
					n++
					if x.isNeg() || x.bitLen() > mu+1 || modularMasks(len(hts)) && x.bitLen() > mu {
						t.Fatalf("masked score %v outside the mask range 2^%d", x.big(), mu)
					}
					if x.bitLen() >= mu-4 {
						high++
					}
				}
			}
			// Unmasked scores are below 2^(ScoreBits+ScoreBoundBits) = 2^30
			// and mostly far below; uniform masks put 15/16 of the values in
			// the top 4 bits of 2^μ.
			if n == 0 || float64(high)/float64(n) < 0.9 {
				t.Fatalf("%d of %d masked scores in the top of the mask range", high, n)
			}
		})
	}
}

// cryptoFixture runs the host's gradient pipeline on random data.
type cryptoFixture struct {
	s   *suite
	sk  *rlwe.SecretKey
	w   *worker
	enc *rlwe.Encryptor
}

func newCryptoFixture(t *testing.T, batch int) cryptoFixture {
	t.Helper()
	p := DefaultParams(2)
	s, err := newSuite(p, batch)
	if err != nil {
		t.Fatal(err)
	}
	bud, err := p.planBudget(2, batch, s.lay.PerCt) // additive masks: the larger noise
	if err != nil {
		t.Fatal(err)
	}
	s.setBudget(bud)
	kg := rlwe.NewKeyGenerator(s.params)
	sk := kg.GenSecretKeyNew()
	w, err := s.newWorker(kg.GenPublicKeyNew(sk))
	if err != nil {
		t.Fatal(err)
	}
	return cryptoFixture{s: s, sk: sk, w: w, enc: rlwe.NewEncryptor(s.params, sk)}
}

// gradient encrypts d' and c, computes the host's masked gradient for the
// feature columns x with score masks m, and returns the guest's decryption
// (before flooding), the host's masks and the exact Σ x·d.
func (f cryptoFixture) gradient(t *testing.T, rng *mrand.Rand, b, feats int, masked bool) (dec, masks [][]uint64, want []float64) {
	s := f.s
	p := s.p
	L := len(p.Q)
	mu := p.MaskRangeBits()
	x := batchColumns{rows: b, x: make([]int32, b*feats)}
	for i := range x.x {
		v, _ := quantize(rng.NormFloat64(), p.FeatureBits, 31)
		x.x[i] = int32(v)
	}
	cInt := make([]uint64, b)
	dp := make([]i128, b)
	mres := make([]uint64, b*L)
	dInt := make([]*big.Int, b)
	for i := range cInt {
		c, _ := quantize(0.5+2*rng.Float64(), p.WeightBits, 40)
		cInt[i] = uint64(c)
		v, _ := quantize(4*rng.NormFloat64(), p.ScoreBits, 40) // t + U
		m := i128{hi: rng.Uint64() & (1<<(mu-64) - 1), lo: rng.Uint64()}
		for j, q := range p.Q {
			mres[j*b+i] = ring.MForm(m.mod(q), q, s.ringQ.SubRings[j].BRedConstant)
		}
		dp[i] = i128From(v).add(m).mulSmall(cInt[i])
		dInt[i] = new(big.Int).Mul(big.NewInt(v), new(big.Int).SetUint64(cInt[i]))
	}
	want = make([]float64, feats)
	for jj := range want {
		sum := new(big.Int)
		for i, xv := range x.col(jj) {
			sum.Add(sum, new(big.Int).Mul(big.NewInt(int64(xv)), dInt[i]))
		}
		fv, _ := new(big.Float).SetInt(sum).Float64()
		want[jj] = math.Ldexp(fv, -(p.FeatureBits + p.WeightBits + p.ScoreBits + 2))
	}
	sdD, _, err := s.encryptSeeded(f.enc, s.rowsPoly(b, func(i, j int) uint64 { return dp[i].mod(p.Q[j]) }))
	if err != nil {
		t.Fatal(err)
	}
	sdC, _, err := s.encryptSeeded(f.enc, s.rowsPoly(b, func(i, j int) uint64 { return cInt[i] % p.Q[j] }))
	if err != nil {
		t.Fatal(err)
	}
	ctD, _ := s.expand(sdD)
	ctC, _ := s.expand(sdC)
	f.w.layout(f.w.p1, x, 0, feats, nil, false)
	f.w.layout(f.w.p2, x, 0, feats, mres, true)
	f.w.product([]*rlwe.Ciphertext{ctD, ctC}, []ring.Poly{f.w.p1, f.w.p2})
	if masked {
		masks = make([][]uint64, feats)
		for jj := range masks {
			masks[jj] = make([]uint64, s.out+1)
			if err := s.uniformResidues(masks[jj]); err != nil {
				t.Fatal(err)
			}
		}
	}
	pos := s.resultPositions(feats)
	res, err := s.decodeResults(f.w.finish(pos, masks, nil), []int{feats})
	if err != nil {
		t.Fatal(err)
	}
	return s.decryptAt(f.sk, res[0].C1, res[0].C0, pos), masks, want
}

// TestGradientMaskRange checks that the host's gradient masks are uniform
// over Z_{Q_out} (what the guest decrypts is uniform: perfect hiding), and
// that removing them gives Σ x·d to within the noise budget.
func TestGradientMaskRange(t *testing.T) {
	f := newCryptoFixture(t, 512)
	s := f.s
	rng := mrand.New(mrand.NewPCG(4, 4))
	quarter := new(big.Int).Rsh(s.crtOut.Q, 2)
	far := func(res []uint64) bool {
		v := s.crtOut.centered(s.crtOut.combine(res))
		return v.CmpAbs(quarter) > 0
	}
	var farMasked, total int
	scale := s.gradientScale()
	tol := math.Exp2(s.bud.ErrorLog2)
	for trial := 0; trial < 4; trial++ {
		dec, masks, want := f.gradient(t, rng, 500, 16, true)
		for jj, d := range dec {
			total++
			if far(d) {
				farMasked++
			}
			un := make([]uint64, len(d))
			for j, q := range s.p.Q[:s.out+1] {
				un[j] = (d[j] + q - masks[jj][j]) % q
			}
			got := toReal(s.crtOut.centered(s.crtOut.combine(un)), scale)
			if math.Abs(got-want[jj]) > tol {
				t.Fatalf("feature %d: %.12f, want %.12f (budget 2^%.1f)", jj, got, want[jj], s.bud.ErrorLog2)
			}
		}
	}
	// Uniform values land beyond Q/4 half of the time; unmasked sums never.
	if fr := float64(farMasked) / float64(total); fr < 0.3 || fr > 0.7 {
		t.Fatalf("masked decryptions beyond Q/4 in %.2f of cases, want ≈ 0.5", fr)
	}
	dec, _, _ := f.gradient(t, rng, 500, 16, false)
	for _, d := range dec {
		if far(d) {
			t.Fatal("an unmasked gradient reaches Q/4: the masked test above proves nothing")
		}
	}
	// The residues themselves are uniform below each prime.
	for j, q := range s.p.Q[:s.out+1] {
		var high int
		r := make([]uint64, s.out+1)
		for range 4000 {
			if err := s.uniformResidues(r); err != nil {
				t.Fatal(err)
			}
			if r[j] >= q {
				t.Fatal("residue not reduced")
			}
			if r[j] >= q/2 {
				high++
			}
		}
		if high < 1800 || high > 2200 {
			t.Fatalf("prime %d: %d of 4000 residues in the upper half", j, high)
		}
	}
}

// TestFloodRange checks the noise the guest adds to decryptions it returns.
func TestFloodRange(t *testing.T) {
	f := newCryptoFixture(t, 512)
	r := &guestRun{s: f.s}
	lim := new(big.Int).Lsh(big.NewInt(1), uint(f.s.bud.FloodLog2))
	half := new(big.Int).Rsh(lim, 1)
	var large int
	for range 200 {
		out, err := r.flood(make([]uint64, f.s.out+1))
		if err != nil {
			t.Fatal(err)
		}
		v := f.s.crtOut.centered(f.s.crtOut.combine(out))
		if v.CmpAbs(lim) > 0 {
			t.Fatalf("flooding noise %v beyond 2^%d", v, f.s.bud.FloodLog2)
		}
		if v.CmpAbs(half) > 0 {
			large++
		}
	}
	if large < 60 || large > 140 {
		t.Fatalf("%d of 200 flooding values beyond 2^(FloodLog2-1), want ≈ 100", large)
	}
	if f.s.bud.FloodLog2 < f.s.p.FloodBits+10 {
		t.Fatalf("flooding 2^%d does not exceed the noise bound by %d bits", f.s.bud.FloodLog2, f.s.p.FloodBits)
	}
}

func TestZeroSumMasks(t *testing.T) {
	var k maskKey
	rand.Read(k.seed[:])
	for _, hosts := range []int{1, 2, 3} {
		sum := make([]i128, 10)
		for h := 0; h < hosts; h++ {
			m, err := k.zeroSumMasks(2, 0, h, hosts, 10)
			if err != nil {
				t.Fatal(err)
			}
			for i := range sum {
				sum[i] = sum[i].add(m[i])
			}
			if hosts > 1 && h == 0 && m[0] == (i128{}) {
				t.Fatal("zero mask")
			}
		}
		for _, v := range sum {
			if v != (i128{}) {
				t.Fatalf("%d hosts: masks sum to %v", hosts, v.big())
			}
		}
	}
}

func TestSeedSealing(t *testing.T) {
	a, _ := ecdh.X25519().GenerateKey(rand.Reader)
	b, _ := ecdh.X25519().GenerateKey(rand.Reader)
	c, _ := ecdh.X25519().GenerateKey(rand.Reader)
	var seed [32]byte
	rand.Read(seed[:])
	sealed, err := sealSeed(a, b.PublicKey().Bytes(), "sess", 1, seed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := openSeed(b, a.PublicKey().Bytes(), "sess", 1, sealed)
	if err != nil || got != seed {
		t.Fatalf("open: %v", err)
	}
	for name, f := range map[string]func() error{
		"wrong key":     func() error { _, err := openSeed(c, a.PublicKey().Bytes(), "sess", 1, sealed); return err },
		"wrong session": func() error { _, err := openSeed(b, a.PublicKey().Bytes(), "other", 1, sealed); return err },
		"wrong target":  func() error { _, err := openSeed(b, a.PublicKey().Bytes(), "sess", 2, sealed); return err },
		"truncated":     func() error { _, err := openSeed(b, a.PublicKey().Bytes(), "sess", 1, sealed[:10]); return err },
	} {
		if f() == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestBudget(t *testing.T) {
	p := DefaultParams(2)
	for _, tc := range []struct{ hosts, batch, perCt int }{{1, 512, 16}, {4, 512, 16}, {1, 2048, 4}, {8, 4096, 2}} {
		b, err := p.planBudget(tc.hosts, tc.batch, tc.perCt)
		if err != nil {
			t.Errorf("%+v: %v", tc, err)
			continue
		}
		if b.ErrorLog2 > -12 || b.HeadroomBits < 1 {
			t.Errorf("%+v: %+v", tc, b)
		}
	}
	small := p
	small.Q = small.Q[:3]
	if _, err := small.planBudget(2, 512, 16); err == nil {
		t.Error("three 54-bit primes accepted for additive 40-bit masks and 40-bit flooding")
	}
	one := DefaultParams(1)
	if b, err := one.planBudget(1, 512, 16); err != nil || b.ErrorLog2 > -20 {
		t.Errorf("one host, three primes: %+v %v", b, err)
	}
	if _, err := one.planBudget(2, 512, 16); err == nil {
		t.Error("three primes accepted for additive masks")
	}
	big := p
	big.Q = append(append([]uint64(nil), p.Q...), p.Q[0])
	if big.Validate() == nil {
		t.Error("log Q over 218 accepted for N = 2^13")
	}

}
