package keys

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzOpen feeds stored-ciphertext decoding arbitrary bytes: it must never
// panic, must refuse anything seal did not produce for that aad, and must
// round-trip what seal did produce.
func FuzzOpen(f *testing.F) {
	a, err := newAEAD(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("plaintext"), []byte("aad"), []byte{})
	f.Add([]byte{}, []byte{}, []byte{1})
	other, _ := newAEAD(bytes.Repeat([]byte{8}, 32))
	f.Add([]byte("x"), []byte("y"), seal(other, []byte("x"), []byte("y"))) // another key
	f.Fuzz(func(t *testing.T, plain, aad, junk []byte) {
		sealed := seal(a, plain, aad)
		if sealed[0] != formatV1 || len(sealed) != 1+a.Overhead()+len(plain) {
			t.Fatalf("sealed layout: %x", sealed)
		}
		got, err := open(a, sealed, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		if bytes.Equal(junk, sealed) {
			return
		}
		if p, err := open(a, junk, aad); !errors.Is(err, ErrDecrypt) || p != nil {
			t.Fatalf("open(junk) = %q, %v; want ErrDecrypt", p, err)
		}
	})
}
