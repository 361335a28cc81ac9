package kkrt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math/bits"
)

// SeedBytes is the size of every AES-128 key and seed of the protocol.
const SeedBytes = 16

// idPrefix domain-separates the identifier digest.
const idPrefix = "fedrisk-kkrt-v1-id"

// lastWordMask keeps the 56 code bits of a row's last word.
const lastWordMask = 1<<(CodeBits-6*64) - 1

// digest is the 128-bit digest of an identifier in one session: the first
// 16 bytes of SHA-256(idPrefix || session tag || identifier). Distinct
// identifiers of a session collide with probability below (n+m)²·2^-129.
type digest [16]byte

// digester computes digests; not safe for concurrent use.
type digester struct{ buf []byte }

func newDigester(sess SessionTag) *digester {
	b := make([]byte, 0, len(idPrefix)+len(sess)+64)
	b = append(b, idPrefix...)
	return &digester{buf: append(b, sess[:]...)}
}

func (d *digester) digest(id []byte) digest {
	n := len(idPrefix) + len(SessionTag{})
	d.buf = append(d.buf[:n], id...)
	sum := sha256.Sum256(d.buf)
	return digest(sum[:16])
}

// positions returns the NumHashes cuckoo bins of a digest in a table of
// bins bins: AES_seed(d) cut into three 42-bit fractions f, each mapped to
// ⌊f·bins/2^42⌋. Positions may coincide.
func positions(cuckoo cipher.Block, d *digest, binCount int, tmp *aesBuf) [NumHashes]uint32 {
	out := tmp[1][:]
	cuckoo.Encrypt(out, d[:])
	v0 := binary.LittleEndian.Uint64(out[0:8])
	v1 := binary.LittleEndian.Uint64(out[8:16])
	const mask42 = 1<<42 - 1
	f := [NumHashes]uint64{v0 & mask42, (v0>>42 | v1<<22) & mask42, (v1 >> 20) & mask42}
	var p [NumHashes]uint32
	for i, x := range f {
		hi, _ := bits.Mul64(x<<22, uint64(binCount))
		p[i] = uint32(hi)
	}
	return p
}

// codeword writes C(d, i) to out: the first CodeBits bits of
// AES_k(d ⊕ 4i) || AES_k(d ⊕ (4i+1)) || AES_k(d ⊕ (4i+2)) || AES_k(d ⊕ (4i+3)),
// the XOR on the last byte. Under AES as a pseudorandom function, codewords
// of distinct (identifier, hash index) pairs are independent and uniform,
// which is the pseudorandom code KKRT needs.
func codeword(code cipher.Block, d *digest, hash int, out *[rowWords]uint64, tmp *aesBuf) {
	in, o := &tmp[0], &tmp[1]
	for b := range 4 {
		*in = *d
		in[15] ^= byte(hash<<2 | b)
		code.Encrypt(o[:], in[:])
		out[2*b] = binary.LittleEndian.Uint64(o[0:8])
		if 2*b+1 < rowWords {
			out[2*b+1] = binary.LittleEndian.Uint64(o[8:16])
		}
	}
	out[rowWords-1] &= lastWordMask
}

// aesBuf is a worker's input and output block for single-block AES calls,
// which would otherwise allocate (the cipher.Block interface hides that
// they do not keep them).
type aesBuf [2][16]byte

// putRow writes the RowBytes wire form of a row.
func putRow(dst []byte, row *[rowWords]uint64) {
	_ = dst[RowBytes-1]
	for w := range rowWords - 1 {
		binary.LittleEndian.PutUint64(dst[8*w:], row[w])
	}
	last := row[rowWords-1]
	for i := range 7 {
		dst[48+i] = byte(last >> (8 * i))
	}
}

// getRow reads a row from its wire form.
func getRow(src []byte, row *[rowWords]uint64) {
	_ = src[RowBytes-1]
	for w := range rowWords - 1 {
		row[w] = binary.LittleEndian.Uint64(src[8*w:])
	}
	var last uint64
	for i := range 7 {
		last |= uint64(src[48+i]) << (8 * i)
	}
	row[rowWords-1] = last
}

// tagHasher computes OPRF values: the first bytes of SHA-256 of a row's
// RowBytes wire form, the correlation-robust hash H of KKRT. 55 bytes fit
// one SHA-256 block, so one compression per value. Reusing the hash state
// saves a third of the cost of sha256.Sum256. Not safe for concurrent use.
type tagHasher struct {
	h   hash.Hash
	buf [RowBytes]byte
	sum [sha256.Size]byte
}

func newTagHasher() *tagHasher { return &tagHasher{h: sha256.New()} }

// tag writes the first len(tag) bytes of H(row) to tag.
func (t *tagHasher) tag(row *[rowWords]uint64, tag []byte) {
	putRow(t.buf[:], row)
	t.h.Reset()
	t.h.Write(t.buf[:])
	copy(tag, t.h.Sum(t.sum[:0]))
}

// newAES returns AES-128 under key.
func newAES(key []byte) (cipher.Block, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kkrt: aes: %w", err)
	}
	return b, nil
}

// columnPRG expands the CodeBits base-OT seeds of one party: column c is
// the AES-128-CTR keystream under seed c from counter 0 (a 128-bit
// big-endian counter), bin j being bit j%64 of its little-endian word j/64.
// A batch's bins start at a multiple of 128, so each batch is its own range
// of counters and batches can be computed in any order.
type columnPRG struct {
	blocks []cipher.Block
}

func newColumnPRG(seeds [][SeedBytes]byte) (*columnPRG, error) {
	p := &columnPRG{blocks: make([]cipher.Block, len(seeds))}
	for i := range seeds {
		b, err := newAES(seeds[i][:])
		if err != nil {
			return nil, err
		}
		p.blocks[i] = b
	}
	return p, nil
}

// fill writes column c's words for bins firstBin .. firstBin+64·len(dst)
// to dst, using scratch (8·len(dst) bytes) for the keystream. firstBin is
// a multiple of 128 and len(dst) even.
func (p *columnPRG) fill(c, firstBin int, dst []uint64, scratch []byte) {
	var iv [16]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(firstBin/binsPerBlock))
	scratch = scratch[:8*len(dst)]
	clear(scratch)
	cipher.NewCTR(p.blocks[c], iv[:]).XORKeyStream(scratch, scratch)
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint64(scratch[8*i:])
	}
}
