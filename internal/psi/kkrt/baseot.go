package kkrt

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/gtank/ristretto255"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// PointBytes is the size of an encoded ristretto255 element.
const PointBytes = 32

// baseOTPrefix domain-separates the base-OT key derivation.
const baseOTPrefix = "fedrisk-kkrt-v1-baseot"

// The base OTs are CodeBits random 1-out-of-2 OTs by Chou and Orlandi
// ("The Simplest Protocol for Oblivious Transfer", Latincrypt 2015) over
// ristretto255, with the roles of OT extension: the guest (OPRF receiver)
// is the OT sender and learns both keys k_i^0, k_i^1 of every OT; the host
// (OPRF sender) is the OT receiver with choice bits s and learns k_i^{s_i}
// only.
//
//	guest: a ← Z_ℓ, A = a·G                        A ──▶
//	host:  b_i ← Z_ℓ, B_i = b_i·G + s_i·A      ◀── B_1..B_k
//	guest: k_i^0 = KDF(i, A, B_i, a·B_i), k_i^1 = KDF(i, A, B_i, a·(B_i − A))
//	host:  k_i^{s_i} = KDF(i, A, B_i, b_i·A)
//
// KDF is the first 16 bytes of SHA-256(baseOTPrefix || session tag || i ||
// A || B_i || P). B_i is uniform whatever s_i, so the guest learns nothing
// of s; the host would need a·(B_i − A) or a·B_i for the other key, a CDH
// instance. Every scalar comes from crypto/rand.

// otSender is the guest's side of the base OTs.
type otSender struct {
	a *ristretto255.Scalar
	A [PointBytes]byte
}

func randomScalar() (*ristretto255.Scalar, error) {
	var wide [64]byte
	defer clear(wide[:])
	zero := ristretto255.NewScalar()
	for {
		if _, err := io.ReadFull(rand.Reader, wide[:]); err != nil {
			return nil, fmt.Errorf("kkrt: random scalar: %w", err)
		}
		s := ristretto255.NewScalar().FromUniformBytes(wide[:])
		if s.Equal(zero) == 0 {
			return s, nil
		}
	}
}

func newOTSender() (*otSender, error) {
	a, err := randomScalar()
	if err != nil {
		return nil, err
	}
	s := &otSender{a: a}
	ristretto255.NewElement().ScalarBaseMult(a).Encode(s.A[:0])
	return s, nil
}

// destroy zeroes the secret scalar.
func (s *otSender) destroy() {
	if s != nil && s.a != nil {
		s.a.Zero()
		s.a = nil
	}
}

// keys derives both keys of every OT from the host's points.
func (s *otSender) keys(sess SessionTag, points []byte) ([][2][SeedBytes]byte, error) {
	if s.a == nil {
		return nil, fmt.Errorf("kkrt: base OT: sender key destroyed: %w", psi.ErrProtocol)
	}
	if len(points) != CodeBits*PointBytes {
		return nil, fmt.Errorf("kkrt: base OT: %d bytes of points, want %d: %w", len(points), CodeBits*PointBytes, psi.ErrMalformed)
	}
	var A ristretto255.Element
	if err := decodePoint(&A, s.A[:]); err != nil {
		return nil, err
	}
	out := make([][2][SeedBytes]byte, CodeBits)
	err := parallelRange(CodeBits, 8, func(lo, hi int) error {
		var B, P, D ristretto255.Element
		var enc [PointBytes]byte
		for i := lo; i < hi; i++ {
			b := points[i*PointBytes : (i+1)*PointBytes]
			if err := decodePoint(&B, b); err != nil {
				return fmt.Errorf("kkrt: base OT point %d: %w", i, err)
			}
			P.ScalarMult(s.a, &B)
			out[i][0] = baseOTKey(sess, i, s.A[:], b, P.Encode(enc[:0]))
			D.Subtract(&B, &A)
			P.ScalarMult(s.a, &D)
			out[i][1] = baseOTKey(sess, i, s.A[:], b, P.Encode(enc[:0]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// otReceive is the host's side: for choice bits s (bit i of word i/64) and
// the guest's A it returns the points B_i to send and the keys k_i^{s_i}.
func otReceive(sess SessionTag, s *[rowWords]uint64, aEnc []byte) (points []byte, keys [][SeedBytes]byte, err error) {
	var A ristretto255.Element
	if err := decodePoint(&A, aEnc); err != nil {
		return nil, nil, fmt.Errorf("kkrt: base OT: guest point: %w", err)
	}
	points = make([]byte, CodeBits*PointBytes)
	keys = make([][SeedBytes]byte, CodeBits)
	err = parallelRange(CodeBits, 8, func(lo, hi int) error {
		var X, Y, P ristretto255.Element
		var x, y, enc [PointBytes]byte
		for i := lo; i < hi; i++ {
			b, err := randomScalar()
			if err != nil {
				return err
			}
			X.ScalarBaseMult(b)
			Y.Add(&X, &A)
			X.Encode(x[:0])
			Y.Encode(y[:0])
			bit := int(s[i/64]>>(i%64)) & 1
			subtle.ConstantTimeCopy(bit, x[:], y[:]) // B_i = b·G + s_i·A
			copy(points[i*PointBytes:], x[:])
			P.ScalarMult(b, &A)
			keys[i] = baseOTKey(sess, i, aEnc, x[:], P.Encode(enc[:0]))
			b.Zero()
			clear(y[:])
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return points, keys, nil
}

func baseOTKey(sess SessionTag, i int, a, b, p []byte) [SeedBytes]byte {
	h := sha256.New()
	h.Write([]byte(baseOTPrefix))
	h.Write(sess[:])
	var idx [4]byte
	binary.BigEndian.PutUint32(idx[:], uint32(i))
	h.Write(idx[:])
	h.Write(a)
	h.Write(b)
	h.Write(p)
	var k [SeedBytes]byte
	copy(k[:], h.Sum(nil))
	return k
}

// decodePoint sets p to the element encoded by b after checking that the
// encoding is canonical (it re-encodes to b) and not the identity.
func decodePoint(p *ristretto255.Element, b []byte) error {
	if len(b) != PointBytes {
		return fmt.Errorf("%w: point of %d bytes", psi.ErrInvalidPoint, len(b))
	}
	if err := p.Decode(b); err != nil {
		return fmt.Errorf("%w: not a canonical ristretto255 encoding", psi.ErrInvalidPoint)
	}
	var re, identity [PointBytes]byte
	p.Encode(re[:0])
	if subtle.ConstantTimeCompare(re[:], b) != 1 {
		return fmt.Errorf("%w: does not re-encode to the same bytes", psi.ErrInvalidPoint)
	}
	if subtle.ConstantTimeCompare(re[:], identity[:]) == 1 {
		return fmt.Errorf("%w: identity element", psi.ErrInvalidPoint)
	}
	return nil
}

// parallelRange runs fn over [0, n) in contiguous chunks of at least
// minChunk, one per worker, up to GOMAXPROCS workers, and returns the error
// of the lowest failing chunk.
func parallelRange(n, minChunk int, fn func(lo, hi int) error) error {
	return parallelWorkers(n, minChunk, func(_, lo, hi int) error { return fn(lo, hi) })
}

// parallelWorkers is parallelRange that also passes each chunk's worker
// number, below GOMAXPROCS.
func parallelWorkers(n, minChunk int, fn func(w, lo, hi int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
	if workers <= 1 {
		if n == 0 {
			return nil
		}
		return fn(0, 0, n)
	}
	chunk := (n + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			break
		}
		wg.Go(func() { errs[w] = fn(w, lo, hi) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
