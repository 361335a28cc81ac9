package hetero

import (
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// BenchmarkPackingCoefficients is the host's work for one ciphertext of
// results (16 features × 512 rows with the default parameters): the two
// feature layouts, the two products, switching down and re-randomising.
func BenchmarkPackingCoefficients(b *testing.B) {
	p := DefaultParams(1)
	s, err := newSuite(p, 512)
	if err != nil {
		b.Fatal(err)
	}
	bud, err := p.planBudget(1, 512, s.lay.PerCt)
	if err != nil {
		b.Fatal(err)
	}
	s.setBudget(bud)
	kg := rlwe.NewKeyGenerator(s.params)
	sk := kg.GenSecretKeyNew()
	w, err := s.newWorker(kg.GenPublicKeyNew(sk))
	if err != nil {
		b.Fatal(err)
	}
	x := batchColumns{rows: 512, x: make([]int32, 512*16)}
	for i := range x.x {
		x.x[i] = int32(i * 7919 % 100000)
	}
	m := make([]uint64, len(p.Q)*512)
	for i := range m {
		m[i] = uint64(i) * 12345
	}
	ct := rlwe.NewCiphertext(s.params, 1, s.top)
	pos := s.resultPositions(16)
	out := make([]byte, 0, s.resultBytes(16))
	b.ResetTimer()
	for range b.N {
		w.layout(w.p1, x, 0, 16, nil, false)
		w.layout(w.p2, x, 0, 16, m, true)
		w.product([]*rlwe.Ciphertext{ct, ct}, []ring.Poly{w.p1, w.p2})
		w.finish(pos, nil, out[:0])
	}
}

// BenchmarkPackingSlotsRotation is one rotation (key switch) of a
// slot-packed CKKS ciphertext, the unit of cost of the alternative packing
// (rows in slots, X_hᵀ·[[d]] by diagonals and rotate-and-sum): a 16×512
// product needs about a dozen, a 300×8192 one about fifty.
func BenchmarkPackingSlotsRotation(b *testing.B) {
	for _, logN := range []int{13, 14} {
		b.Run(map[int]string{13: "N=2^13", 14: "N=2^14"}[logN], func(b *testing.B) {
			params, err := ckks.NewParametersFromLiteral(ckks.ParametersLiteral{LogN: logN, LogQ: []int{55, 40, 40}, LogP: []int{61}, LogDefaultScale: 40})
			if err != nil {
				b.Fatal(err)
			}
			kg := rlwe.NewKeyGenerator(params)
			sk := kg.GenSecretKeyNew()
			eval := ckks.NewEvaluator(params, rlwe.NewMemEvaluationKeySet(nil, kg.GenGaloisKeysNew(params.GaloisElements([]int{1}), sk)...))
			pt := ckks.NewPlaintext(params, params.MaxLevel())
			if err := ckks.NewEncoder(params).Encode(make([]float64, params.MaxSlots()), pt); err != nil {
				b.Fatal(err)
			}
			ct, err := rlwe.NewEncryptor(params, sk).EncryptNew(pt)
			if err != nil {
				b.Fatal(err)
			}
			out := ckks.NewCiphertext(params, 1, ct.Level())
			b.ResetTimer()
			for range b.N {
				if err := eval.Rotate(ct, 1, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
