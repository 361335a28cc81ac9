package hetero

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// Payload encodings. All integers are little-endian uint64 residues unless
// said otherwise; every decoder takes the expected shape from the session
// and rejects anything else (length, residue ≥ its prime, counts).
//
//	seeded ciphertext  32-byte seed ‖ c0: (top+1)·N residues (NTT domain)
//	result ciphertext  c0 at the result positions: feats·(out+1) residues
//	                   (coefficient domain) ‖ c1: (out+1)·N residues (NTT)
//	public key         pk0 ‖ pk1: 2·(out+1)·N residues
//	scores             count × 16-byte big-endian two's complement
//	decrypted          feats·(out+1) residues
//	JSON               hello, hello-reply, finish, finish-reply

// jsonPayload decodes a JSON control payload strictly.
func jsonPayload(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	return nil
}

// putPoly appends the residues of p's levels 0..level.
func putPoly(b []byte, p ring.Poly, level int) []byte {
	for j := 0; j <= level; j++ {
		for _, v := range p.Coeffs[j] {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// getPoly reads (level+1)·N residues into p, checking each against its
// prime. It returns the rest of b.
func (s *suite) getPoly(b []byte, p ring.Poly, level int) ([]byte, error) {
	need := (level + 1) * s.n * 8
	if len(b) < need {
		return nil, fmt.Errorf("%w: polynomial needs %d bytes, have %d", ErrMalformed, need, len(b))
	}
	for j := 0; j <= level; j++ {
		q := s.p.Q[j]
		c := p.Coeffs[j]
		for i := range c {
			v := binary.LittleEndian.Uint64(b)
			if v >= q {
				return nil, fmt.Errorf("%w: residue not reduced modulo its prime", ErrMalformed)
			}
			c[i] = v
			b = b[8:]
		}
	}
	return b, nil
}

func (s *suite) seededBytes() int { return 32 + (s.top+1)*s.n*8 }

func (s *suite) appendSeeded(b []byte, sd seeded) []byte {
	b = append(b, sd.Seed[:]...)
	return putPoly(b, sd.C0, s.top)
}

// readSeeded decodes one seeded ciphertext and returns the rest of b.
func (s *suite) readSeeded(b []byte) (seeded, []byte, error) {
	var sd seeded
	if len(b) < 32 {
		return sd, nil, fmt.Errorf("%w: seeded ciphertext truncated", ErrMalformed)
	}
	copy(sd.Seed[:], b)
	sd.C0 = s.ringQ.AtLevel(s.top).NewPoly()
	rest, err := s.getPoly(b[32:], sd.C0, s.top)
	return sd, rest, err
}

// decodeSeededList decodes exactly count seeded ciphertexts.
func (s *suite) decodeSeededList(b []byte, count int) ([]seeded, error) {
	if len(b) != count*s.seededBytes() {
		return nil, fmt.Errorf("%w: want %d seeded ciphertexts (%d bytes), have %d bytes", ErrMalformed, count, count*s.seededBytes(), len(b))
	}
	out := make([]seeded, count)
	for k := range out {
		var err error
		if out[k], b, err = s.readSeeded(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// result is a returned ciphertext as the guest receives it.
type result struct {
	C0 [][]uint64 // [position][prime], coefficient domain
	C1 ring.Poly  // NTT domain, out level
}

func (s *suite) resultBytes(feats int) int { return feats*(s.out+1)*8 + (s.out+1)*s.n*8 }

// decodeResults decodes one result ciphertext per entry of feats.
func (s *suite) decodeResults(b []byte, feats []int) ([]result, error) {
	want := 0
	for _, f := range feats {
		want += s.resultBytes(f)
	}
	if len(b) != want {
		return nil, fmt.Errorf("%w: want %d result ciphertexts (%d bytes), have %d bytes", ErrMalformed, len(feats), want, len(b))
	}
	out := make([]result, len(feats))
	for k, f := range feats {
		r := result{C0: make([][]uint64, f), C1: s.ringQ.AtLevel(s.out).NewPoly()}
		for i := range r.C0 {
			r.C0[i] = make([]uint64, s.out+1)
			for j := range r.C0[i] {
				v := binary.LittleEndian.Uint64(b)
				if v >= s.p.Q[j] {
					return nil, fmt.Errorf("%w: residue not reduced modulo its prime", ErrMalformed)
				}
				r.C0[i][j] = v
				b = b[8:]
			}
		}
		var err error
		if b, err = s.getPoly(b, r.C1, s.out); err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

// residueRows encodes rows of out+1 residues.
func appendResidueRows(b []byte, rows [][]uint64) []byte {
	for _, r := range rows {
		for _, v := range r {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// decodeResidueRows decodes exactly count rows of out+1 residues.
func (s *suite) decodeResidueRows(b []byte, count int) ([][]uint64, error) {
	w := s.out + 1
	if len(b) != count*w*8 {
		return nil, fmt.Errorf("%w: want %d values (%d bytes), have %d bytes", ErrMalformed, count, count*w*8, len(b))
	}
	out := make([][]uint64, count)
	for i := range out {
		out[i] = make([]uint64, w)
		for j := range out[i] {
			v := binary.LittleEndian.Uint64(b)
			if v >= s.p.Q[j] {
				return nil, fmt.Errorf("%w: residue not reduced modulo its prime", ErrMalformed)
			}
			out[i][j] = v
			b = b[8:]
		}
	}
	return out, nil
}

func (s *suite) publicKeyBytes() int { return 2 * (s.out + 1) * s.n * 8 }

func (s *suite) encodePublicKey(pk *rlwe.PublicKey) []byte {
	b := make([]byte, 0, s.publicKeyBytes())
	b = putPoly(b, pk.Value[0].Q, s.out)
	return putPoly(b, pk.Value[1].Q, s.out)
}

// decodePublicKey decodes a public key truncated to the output level
// (the only level a host encrypts at).
func (s *suite) decodePublicKey(b []byte) (*rlwe.PublicKey, error) {
	if len(b) != s.publicKeyBytes() {
		return nil, fmt.Errorf("%w: public key of %d bytes, want %d", ErrMalformed, len(b), s.publicKeyBytes())
	}
	pk := rlwe.NewPublicKey(s.params)
	rest, err := s.getPoly(b, pk.Value[0].Q, s.out)
	if err != nil {
		return nil, err
	}
	if _, err := s.getPoly(rest, pk.Value[1].Q, s.out); err != nil {
		return nil, err
	}
	return pk, nil
}

// appendScores encodes 128-bit values.
func appendScores(b []byte, v []i128) []byte {
	var buf [16]byte
	for _, x := range v {
		x.put(buf[:])
		b = append(b, buf[:]...)
	}
	return b
}

// decodeScores decodes exactly count 128-bit values.
func decodeScores(b []byte, count int) ([]i128, error) {
	if len(b) != count*16 {
		return nil, fmt.Errorf("%w: want %d scores (%d bytes), have %d bytes", ErrMalformed, count, count*16, len(b))
	}
	out := make([]i128, count)
	for i := range out {
		out[i] = getI128(b[i*16:])
	}
	return out, nil
}
