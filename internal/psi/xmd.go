package psi

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
)

// This file holds expand_message_xmd with SHA-512 (RFC 9380, section 5.3.1),
// written here because the chosen ristretto255 library (gtank/ristretto255)
// provides the one-way map from 64 uniform bytes but not the expander. The
// implementation is checked against the RFC 9380 appendix K.3 vectors and,
// end to end, against the RFC 9497 ristretto255-SHA512 OPRF vectors.

const (
	xmdBlockBytes = 64  // b_in_bytes of SHA-512
	xmdRateBytes  = 128 // r_in_bytes (s_in_bytes) of SHA-512
	maxDSTBytes   = 255
	// oversizeDSTPrefix shortens a DST longer than 255 bytes (RFC 9380 5.3.3).
	oversizeDSTPrefix = "H2C-OVERSIZE-DST-"
)

var errXMDLength = errors.New("expand_message_xmd: output length out of range")

// dstPrime returns DST' = DST || I2OSP(len(DST), 1), hashing a DST longer
// than 255 bytes first as RFC 9380 section 5.3.3 requires.
func dstPrime(dst []byte) []byte {
	if len(dst) > maxDSTBytes {
		h := sha512.New()
		h.Write([]byte(oversizeDSTPrefix))
		h.Write(dst)
		dst = h.Sum(nil)
	}
	out := make([]byte, 0, len(dst)+1)
	out = append(out, dst...)
	return append(out, byte(len(dst)))
}

// xmd is a reusable expand_message_xmd(SHA-512) for one DST. It is not safe
// for concurrent use: each worker has its own.
type xmd struct {
	h        hash.Hash
	dstPrime []byte
	zpad     [xmdRateBytes]byte // Z_pad, all zero
	ctr      [1]byte
	lib      [2]byte // l_i_b_str
	b0, bi   [sha512.Size]byte
	t        [sha512.Size]byte
}

func newXMD(dstPrime []byte) *xmd {
	return &xmd{h: sha512.New(), dstPrime: dstPrime}
}

// expand writes len(out) bytes of expand_message_xmd(msg, DST, len(out))
// into out. len(out) must be 1..255*64 (RFC 9380 limits).
func (x *xmd) expand(msg []byte, out []byte) error {
	n := len(out)
	ell := (n + xmdBlockBytes - 1) / xmdBlockBytes
	if n == 0 || ell > 255 || n > 65535 {
		return errXMDLength
	}
	binary.BigEndian.PutUint16(x.lib[:], uint16(n))

	// b_0 = H(Z_pad || msg || l_i_b_str || I2OSP(0, 1) || DST_prime)
	h := x.h
	h.Reset()
	h.Write(x.zpad[:])
	h.Write(msg)
	h.Write(x.lib[:])
	x.ctr[0] = 0
	h.Write(x.ctr[:])
	h.Write(x.dstPrime)
	h.Sum(x.b0[:0])

	// b_1 = H(b_0 || I2OSP(1, 1) || DST_prime)
	h.Reset()
	h.Write(x.b0[:])
	x.ctr[0] = 1
	h.Write(x.ctr[:])
	h.Write(x.dstPrime)
	h.Sum(x.bi[:0])
	off := copy(out, x.bi[:])

	// b_i = H(strxor(b_0, b_(i-1)) || I2OSP(i, 1) || DST_prime)
	for i := 2; i <= ell; i++ {
		for j := range x.t {
			x.t[j] = x.b0[j] ^ x.bi[j]
		}
		h.Reset()
		h.Write(x.t[:])
		x.ctr[0] = byte(i)
		h.Write(x.ctr[:])
		h.Write(x.dstPrime)
		h.Sum(x.bi[:0])
		off += copy(out[off:], x.bi[:])
	}
	return nil
}
