package secureboost

import (
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// TestEncryptRowsIsLattigoRLWE decrypts the guest's ciphertexts, expanded
// from their seeds as a host does, with lattigo's own Decryptor: the
// plaintext comes back up to the centred binomial error.
func TestEncryptRowsIsLattigoRLWE(t *testing.T) {
	s, err := newSuite(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	bud, err := s.p.planBudget(20, 1000, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.setBudget(bud)
	kg := rlwe.NewKeyGenerator(s.params)
	sk := kg.GenSecretKeyNew()
	enc, err := s.newEncrypter(sk)
	if err != nil {
		t.Fatal(err)
	}
	rows := []int32{0, 1, 2, 5, 7}
	gq := []int64{-1 << 20, 3, 0, 0, 0, 123456, 0, -7}
	hq := []int64{1 << 18, 1, 0, 0, 0, 99, 0, 250000}
	sd, err := enc.encryptRows(rows, gq, hq)
	if err != nil {
		t.Fatal(err)
	}
	ct := rlwe.NewCiphertext(s.params, 1, s.top)
	ct.IsNTT = true
	if err := s.expand(sd, ct); err != nil {
		t.Fatal(err)
	}
	pt := rlwe.NewDecryptor(s.params, sk).DecryptNew(ct)
	r := s.ringQ.AtLevel(s.top)
	r.INTT(pt.Value, pt.Value)
	for i := 0; i < s.n; i++ {
		for j, q := range s.p.Q {
			want := uint64(0)
			if i < len(rows) {
				want = s.packed(gq[rows[i]], hq[rows[i]], j)
			}
			d := (pt.Value.Coeffs[j][i] + q - want) % q
			if d > cbdBound && q-d > cbdBound {
				t.Fatalf("coefficient %d prime %d: error %d beyond the bound", i, j, d)
			}
		}
	}
}
