package kkrt

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// FloorReport is the measured cost floor of a session (see Floor).
type FloorReport struct {
	// Seconds is the floor for the sizes given to Floor.
	Seconds float64 `json:"floor_seconds"`
	// Per-unit wall times on all cores, in nanoseconds: digest and cuckoo
	// positions of one identifier; codeword and OPRF hash of one value; the
	// column PRG of one bin for one set of CodeBits columns.
	IdentifierNanos float64 `json:"identifier_ns"`
	ValueNanos      float64 `json:"value_ns"`
	PRGNanos        float64 `json:"prg_ns_per_bin"`
}

// floorSample is the number of units Floor times per primitive.
const floorSample = 1 << 14

// Floor measures, now and on all cores, the AES and hashing work that any
// KKRT session with a guest set of n and a host set of m must do, and
// returns it as a time: SHA-256 digests and AES cuckoo positions of n + m
// identifiers; codewords (four AES blocks) and SHA-256 OPRF values of n
// guest and NumHashes·m host values; the AES-CTR column PRG over
// 3·CodeBits bits per bin (two column sets at the guest, one at the host).
// It leaves out what an implementation could in principle avoid or
// overlap: base OTs, matrix transposition, cuckoo insertion, matching,
// encoding and the network. Run it in the same process and moment as the
// session it is compared with.
func Floor(n, m int) (FloorReport, error) {
	var key [SeedBytes]byte
	if _, err := io.ReadFull(rand.Reader, key[:]); err != nil {
		return FloorReport{}, fmt.Errorf("kkrt: floor: %w", err)
	}
	block, err := newAES(key[:])
	if err != nil {
		return FloorReport{}, err
	}
	sess := SessionTagOf(key[:])
	ids := make([][]byte, floorSample)
	for i := range ids {
		ids[i] = binary.BigEndian.AppendUint64([]byte("floor-"), uint64(i))
	}
	digs := make([]digest, floorSample)
	timeIt := func(fn func()) float64 {
		fn() // warm up
		t := time.Now()
		fn()
		return float64(time.Since(t).Nanoseconds())
	}
	idNs := timeIt(func() {
		_ = parallelRange(floorSample, 256, func(lo, hi int) error {
			d := newDigester(sess)
			var tmp aesBuf
			for i := lo; i < hi; i++ {
				digs[i] = d.digest(ids[i])
				_ = positions(block, &digs[i], floorSample, &tmp)
			}
			return nil
		})
	}) / floorSample
	tags := make([]byte, floorSample*8)
	valueNs := timeIt(func() {
		_ = parallelRange(floorSample, 256, func(lo, hi int) error {
			var cw [rowWords]uint64
			var tmp aesBuf
			th := newTagHasher()
			for i := lo; i < hi; i++ {
				codeword(block, &digs[i], i%NumHashes, &cw, &tmp)
				th.tag(&cw, tags[8*i:8*i+8])
			}
			return nil
		})
	}) / floorSample
	seeds := make([][SeedBytes]byte, CodeBits)
	for i := range seeds {
		seeds[i] = key
		seeds[i][0] ^= byte(i)
		seeds[i][1] ^= byte(i >> 8)
	}
	prg, err := newColumnPRG(seeds)
	if err != nil {
		return FloorReport{}, err
	}
	const words = floorSample / 64
	cols := make([]uint64, CodeBits*words)
	prgNs := timeIt(func() {
		_ = parallelRange(CodeBits, 8, func(lo, hi int) error {
			ks := make([]byte, 8*words)
			for c := lo; c < hi; c++ {
				prg.fill(c, 0, cols[c*words:(c+1)*words], ks)
			}
			return nil
		})
	}) / floorSample
	r := FloorReport{IdentifierNanos: idNs, ValueNanos: valueNs, PRGNanos: prgNs}
	r.Seconds = (float64(n+m)*idNs + float64(n+NumHashes*m)*valueNs + 3*float64(Bins(n))*prgNs) / 1e9
	return r, nil
}
