package psi

import "github.com/gtank/ristretto255"

// KeyFromScalar returns a Key holding the canonical little-endian scalar b,
// for test vectors. Production keys come only from NewKey.
func KeyFromScalar(b []byte) (*Key, error) {
	s := ristretto255.NewScalar()
	if err := s.Decode(b); err != nil {
		return nil, err
	}
	return &Key{s: s}, nil
}

// HashToGroup returns the encoding of hash_to_ristretto255(msg) under dst.
func HashToGroup(dst, msg []byte) []byte {
	var e ristretto255.Element
	newHasher(dstPrime(dst)).hash(&e, msg)
	return e.Encode(nil)
}

// ShuffleRecords exposes shuffleRecords.
var ShuffleRecords = shuffleRecords

// ScalarBytes returns the key's scalar, for leak tests.
func ScalarBytes(k *Key) []byte { return k.s.Encode(nil) }
