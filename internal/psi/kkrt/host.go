package kkrt

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Host is the host's (OPRF sender's) protocol state. Its methods are the
// steps a job runner drives; AddExtension is safe for concurrent use on
// distinct batches and spreads its work over all cores:
//
//	h, _ := NewHost(cfg, ids)           // digests
//	reply, _ := h.Respond(guestHello)   // base OTs, code key, permutation, buckets → guest
//	h.AddExtension(b, u)                 // every b < ExtensionBatches()
//	tags, _ := h.Tags(b)                 // → guest, b < TagBatches()
//	rows, _ := h.Learn(positions)        // both-learn mode
//
// The host's values are computed as extension batches arrive (each host
// element's three bins are bucketed by extension batch), so Tags only
// copies. MarshalBinary and RestoreHost keep the secrets across a restart;
// the extension batches must then be sent again.
type Host struct {
	cfg  Config
	sess SessionTag
	rows int
	dig  []digest // per row until Respond, then per position (dig[p] is row perm[p]'s)

	responded  bool
	n          int
	guestBatch int
	binCount   int
	tagLen     int
	s          [rowWords]uint64
	keys       [][SeedBytes]byte
	codeKey    [SeedBytes]byte
	permSeed   [SeedBytes]byte
	cuckooSeed [SeedBytes]byte
	prg        *columnPRG
	code       cipher.Block
	perm       []uint32 // position → row
	bucket     []int    // extension batch b's entries are entries[bucket[b]:bucket[b+1]]
	entries    []uint32 // position<<2 | hash index
	entryBin   []uint32
	tags       []byte // position-major: value (p, i) at (NumHashes·p + i)·tagLen

	scratch scratchPool
	// live is held for reading while a batch computes with the secrets;
	// Close takes it for writing, so it waits for them and later calls
	// find the secrets gone.
	live sync.RWMutex

	mu   sync.Mutex
	ext  map[int]*extBatch // extension batches received; a map, so memory follows the data received
	extN int               // of which absorbed
}

// extBatch is one extension batch at the host: its digest, and done closed
// once its values are computed.
type extBatch struct {
	sum  [sha256.Size]byte
	done chan struct{}
}

// NewHost prepares the host's side for ids (normalised identifiers; rows
// with equal identifiers each get their values, as in ECDH).
func NewHost(cfg Config, ids [][]byte) (*Host, error) {
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return nil, err
	}
	if err := checkSetSize(len(ids)); err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, sess: SessionTagOf(cfg.Session), rows: len(ids)}
	h.dig = digestAll(h.sess, ids)
	return h, nil
}

// Respond takes the guest's hello and returns the host's: it checks the
// settings, draws the choice bits s, the code key and the permutation seed
// from crypto/rand, runs the receiver side of the base OTs, and buckets the
// host's elements by the extension batch of each of their bins.
func (h *Host) Respond(g GuestHello) (HostHello, error) {
	if h.responded {
		return HostHello{}, fmt.Errorf("kkrt: host: second guest hello: %w", psi.ErrProtocol)
	}
	switch {
	case g.Mode != h.cfg.Mode:
		return HostHello{}, fmt.Errorf("%w: guest wants %s, host %s", psi.ErrMismatch, g.Mode, h.cfg.Mode)
	case g.NormDigest != normDigest(h.cfg.Normalization):
		return HostHello{}, fmt.Errorf("%w: normalisation fingerprints differ", psi.ErrMismatch)
	}
	var sb [RowBytes]byte
	if _, err := io.ReadFull(rand.Reader, sb[:]); err != nil {
		return HostHello{}, fmt.Errorf("kkrt: choice bits: %w", err)
	}
	var s [rowWords]uint64
	getRow(sb[:], &s)
	clear(sb[:])
	points, keys, err := otReceive(h.sess, &s, g.OTPoint[:])
	if err != nil {
		return HostHello{}, err
	}
	var codeKey, permSeed [SeedBytes]byte
	if _, err := io.ReadFull(rand.Reader, codeKey[:]); err != nil {
		return HostHello{}, fmt.Errorf("kkrt: code key: %w", err)
	}
	if _, err := io.ReadFull(rand.Reader, permSeed[:]); err != nil {
		return HostHello{}, fmt.Errorf("kkrt: permutation seed: %w", err)
	}
	if err := h.setup(g.SetSize, g.BatchSize, g.CuckooSeed, codeKey, permSeed, s, keys); err != nil {
		return HostHello{}, err
	}
	return HostHello{Mode: h.cfg.Mode, SetSize: h.rows, BatchSize: h.cfg.BatchSize, NormDigest: normDigest(h.cfg.Normalization),
		CodeKey: codeKey, OTPoints: points}, nil
}

func (h *Host) setup(n, guestBatch int, cuckooSeed, codeKey, permSeed [SeedBytes]byte, s [rowWords]uint64, keys [][SeedBytes]byte) error {
	if err := checkSetSize(n); err != nil {
		return err
	}
	if guestBatch < binsPerBlock || guestBatch > MaxBatchElems || guestBatch%binsPerBlock != 0 {
		return fmt.Errorf("kkrt: guest batch of %d bins: %w", guestBatch, psi.ErrMalformed)
	}
	h.n, h.guestBatch, h.binCount = n, guestBatch, Bins(n)
	h.tagLen = TagBytes(n, h.rows)
	h.s, h.keys, h.codeKey, h.permSeed, h.cuckooSeed = s, keys, codeKey, permSeed, cuckooSeed
	h.s[rowWords-1] &= lastWordMask
	var err error
	if h.prg, err = newColumnPRG(keys); err != nil {
		return err
	}
	if h.code, err = newAES(codeKey[:]); err != nil {
		return err
	}
	if h.perm, err = permutation(permSeed, h.rows); err != nil {
		return err
	}
	permuteDigests(h.dig, h.perm)
	h.ext = map[int]*extBatch{}
	if h.ExtensionBatches() > 0 {
		if err := h.bucketize(); err != nil {
			return err
		}
		h.tags = make([]byte, h.rows*NumHashes*h.tagLen)
	}
	h.responded = true
	return nil
}

// permuteDigests reorders d in place so that d[p] becomes the old
// d[perm[p]], following the permutation's cycles with a bitmap of the
// positions done.
func permuteDigests(d []digest, perm []uint32) {
	done := make([]uint64, (len(d)+63)/64)
	for p := range d {
		if done[p/64]>>(p%64)&1 == 1 {
			continue
		}
		first := d[p]
		q := p
		for {
			done[q/64] |= 1 << (q % 64)
			next := int(perm[q])
			if next == p {
				d[q] = first
				break
			}
			d[q] = d[next]
			q = next
		}
	}
}

// bucketize sorts the host's (position, hash index) pairs by the extension
// batch of their bin (a counting sort, positions ascending within a batch,
// so a batch reads the digests and writes the values in address order).
func (h *Host) bucketize() error {
	ck, err := newAES(h.cuckooSeed[:])
	if err != nil {
		return err
	}
	pos := make([][NumHashes]uint32, h.rows)
	_ = parallelRange(h.rows, 1024, func(lo, hi int) error {
		var tmp aesBuf
		for p := lo; p < hi; p++ {
			pos[p] = positions(ck, &h.dig[p], h.binCount, &tmp)
		}
		return nil
	})
	batches := h.ExtensionBatches()
	h.bucket = make([]int, batches+1)
	for _, p := range pos {
		for _, bin := range p {
			h.bucket[int(bin)/h.guestBatch+1]++
		}
	}
	for b := range batches {
		h.bucket[b+1] += h.bucket[b]
	}
	fill := slices.Clone(h.bucket[:batches])
	h.entries = make([]uint32, NumHashes*h.rows)
	h.entryBin = make([]uint32, NumHashes*h.rows)
	for p, bins := range pos {
		for i, bin := range bins {
			b := int(bin) / h.guestBatch
			h.entries[fill[b]] = uint32(p)<<2 | uint32(i)
			h.entryBin[fill[b]] = bin
			fill[b]++
		}
	}
	return nil
}

// ExtensionBatches returns the number of extension batches the guest
// sends, none if either set is empty.
func (h *Host) ExtensionBatches() int {
	if h.n == 0 || h.rows == 0 {
		return 0
	}
	return batchCount(h.binCount, h.guestBatch)
}

// ExtensionBatchLen returns the number of bins (rows) in extension batch b.
func (h *Host) ExtensionBatchLen(b int) int {
	lo, hi := batchRange(h.binCount, h.guestBatch, b)
	return hi - lo
}

// TagBatches returns the number of tag batches, none if either set is
// empty.
func (h *Host) TagBatches() int {
	if h.n == 0 || h.rows == 0 {
		return 0
	}
	return batchCount(h.rows, h.cfg.BatchSize)
}

// TagLen returns the length of one OPRF value (after Respond).
func (h *Host) TagLen() int { return h.tagLen }

// PeerSize returns the guest's set size (after Respond).
func (h *Host) PeerSize() int { return h.n }

// ExtensionComplete reports whether every extension batch was absorbed.
func (h *Host) ExtensionComplete() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.responded && h.extN == h.ExtensionBatches()
}

// AddExtension absorbs extension batch b: the rows q_j = g_j ⊕ (u_j ∧ s)
// of its bins, and from them the host's OPRF values of every (element,
// hash index) whose bin lies in the batch. A batch received again with the
// same bytes is ignored; with other bytes it is an ErrProtocol.
func (h *Host) AddExtension(b int, u []byte) error {
	h.live.RLock()
	defer h.live.RUnlock()
	if !h.responded || h.prg == nil {
		return fmt.Errorf("kkrt: host: extension before the guest's hello or after Close: %w", ErrNotReady)
	}
	if b < 0 || b >= h.ExtensionBatches() {
		return fmt.Errorf("kkrt: host: extension batch %d of %d: %w", b, h.ExtensionBatches(), psi.ErrProtocol)
	}
	lo, hi := batchRange(h.binCount, h.guestBatch, b)
	if len(u) != (hi-lo)*RowBytes {
		return fmt.Errorf("kkrt: host: extension batch %d of %d bytes, want %d rows of %d: %w", b, len(u), hi-lo, RowBytes, psi.ErrProtocol)
	}
	sum := sha256.Sum256(u)
	h.mu.Lock()
	if prev, ok := h.ext[b]; ok {
		// Received before (or being absorbed by a concurrent call): the
		// same bytes are a harmless replay.
		h.mu.Unlock()
		<-prev.done
		if prev.sum != sum {
			return fmt.Errorf("kkrt: host: extension batch %d sent again with other content: %w", b, psi.ErrProtocol)
		}
		return nil
	}
	st := &extBatch{sum: sum, done: make(chan struct{})}
	h.ext[b] = st
	h.mu.Unlock()
	sc := h.scratch.get(hi - lo)
	defer h.scratch.put(sc)
	words := sc.words
	_ = parallelRange(CodeBits, 16, func(c0, c1 int) error {
		ks := make([]byte, 8*words)
		for c := c0; c < c1; c++ {
			h.prg.fill(c, lo, sc.colsA[c*words:(c+1)*words], ks)
		}
		return nil
	})
	// q_j = g_j ⊕ (u_j ∧ s), in place of g_j (rowsA).
	q := sc.rowsA
	_ = parallelRange(words, 4, func(w0, w1 int) error {
		transposeColumns(sc.colsA, words, w0, w1, q)
		var row [rowWords]uint64
		for j := lo + 64*w0; j < min(lo+64*w1, hi); j++ {
			getRow(u[(j-lo)*RowBytes:], &row)
			r := q[(j-lo)*rowWords : (j-lo+1)*rowWords]
			for w := range rowWords {
				r[w] ^= row[w] & h.s[w]
			}
		}
		return nil
	})
	ents := h.entries[h.bucket[b]:h.bucket[b+1]]
	bins := h.entryBin[h.bucket[b]:h.bucket[b+1]]
	_ = parallelRange(len(ents), 256, func(e0, e1 int) error {
		var cw, v [rowWords]uint64
		var tmp aesBuf
		th := newTagHasher()
		for k := e0; k < e1; k++ {
			p, i := int(ents[k]>>2), int(ents[k]&3)
			codeword(h.code, &h.dig[p], i, &cw, &tmp)
			j := (int(bins[k]) - lo) * rowWords
			for w := range v {
				v[w] = q[j+w] ^ (cw[w] & h.s[w])
			}
			off := (p*NumHashes + i) * h.tagLen
			th.tag(&v, h.tags[off:off+h.tagLen])
		}
		return nil
	})
	h.mu.Lock()
	h.extN++
	h.mu.Unlock()
	close(st.done)
	return nil
}

// Tags returns tag batch b: for each host element of the batch, in the
// order of the host's secret permutation, its NumHashes OPRF values (hash
// index 0, 1, 2), TagLen() bytes each. It needs every extension batch.
// The slice is the host's own buffer: read it, do not change it.
func (h *Host) Tags(b int) ([]byte, error) {
	if !h.ExtensionComplete() {
		return nil, fmt.Errorf("kkrt: host: tags before every extension batch arrived: %w", ErrNotReady)
	}
	if b < 0 || b >= h.TagBatches() {
		return nil, fmt.Errorf("kkrt: host: tag batch %d of %d: %w", b, h.TagBatches(), psi.ErrProtocol)
	}
	lo, hi := batchRange(h.rows, h.cfg.BatchSize, b)
	w := NumHashes * h.tagLen
	return h.tags[lo*w : hi*w : hi*w], nil
}

// TagBatchLen returns the number of host elements in tag batch b.
func (h *Host) TagBatchLen(b int) int {
	lo, hi := batchRange(h.rows, h.cfg.BatchSize, b)
	return hi - lo
}

// Learn maps positions the guest revealed (both-learn mode; positions in
// the permuted order of Tags, strictly ascending) to the host's rows,
// ascending.
func (h *Host) Learn(positions []int) ([]int, error) {
	if h.cfg.Mode != psi.ModeBothLearn {
		return nil, fmt.Errorf("kkrt: host: reveal outside both-learn mode: %w", psi.ErrProtocol)
	}
	rows := make([]int, 0, len(positions))
	for i, p := range positions {
		if p < 0 || p >= h.rows || (i > 0 && p <= positions[i-1]) {
			return nil, fmt.Errorf("kkrt: host: revealed position %d out of range or not ascending: %w", p, psi.ErrProtocol)
		}
		rows = append(rows, int(h.perm[p]))
	}
	slices.Sort(rows)
	return rows, nil
}

// permutation returns a uniformly random permutation of 0..n-1 (position →
// row), by Fisher–Yates driven by AES-128-CTR under seed with Lemire's
// unbiased bounded sampling. The seed comes from crypto/rand; deriving the
// permutation from it keeps the host's stored state small.
func permutation(seed [SeedBytes]byte, n int) ([]uint32, error) {
	block, err := newAES(seed[:])
	if err != nil {
		return nil, err
	}
	stream := cipher.NewCTR(block, make([]byte, 16))
	var buf [4096]byte
	pos := len(buf)
	next := func() uint64 {
		if pos == len(buf) {
			clear(buf[:])
			stream.XORKeyStream(buf[:], buf[:])
			pos = 0
		}
		v := binary.LittleEndian.Uint64(buf[pos:])
		pos += 8
		return v
	}
	p := make([]uint32, n)
	for i := range p {
		p[i] = uint32(i)
	}
	for i := n - 1; i > 0; i-- {
		bound := uint64(i) + 1
		hi, lo := bits.Mul64(next(), bound)
		if lo < bound {
			threshold := -bound % bound
			for lo < threshold {
				hi, lo = bits.Mul64(next(), bound)
			}
		}
		p[i], p[hi] = p[hi], p[i]
	}
	clear(buf[:])
	return p, nil
}

const hostStateVersion = 1

const hostStateBytes = 1 + 4 + 4 + RowBytes + 3*SeedBytes + CodeBits*SeedBytes

// MarshalBinary returns the host's secret session state after Respond: the
// guest's set and batch sizes, the choice bits, the code key, the
// permutation and cuckoo seeds and the chosen key of every base OT. With
// the same identifiers RestoreHost rebuilds the host, which then needs
// every extension batch again. It is a secret: store it only encrypted.
func (h *Host) MarshalBinary() ([]byte, error) {
	h.live.RLock()
	defer h.live.RUnlock()
	if !h.responded || h.keys == nil {
		return nil, fmt.Errorf("kkrt: host state before Respond or after Close: %w", ErrNotReady)
	}
	b := make([]byte, 0, hostStateBytes)
	b = append(b, hostStateVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(h.n))
	b = binary.BigEndian.AppendUint32(b, uint32(h.guestBatch))
	var sb [RowBytes]byte
	putRow(sb[:], &h.s)
	b = append(b, sb[:]...)
	clear(sb[:])
	b = append(b, h.codeKey[:]...)
	b = append(b, h.permSeed[:]...)
	b = append(b, h.cuckooSeed[:]...)
	for _, k := range h.keys {
		b = append(b, k[:]...)
	}
	return b, nil
}

// RestoreHost rebuilds a host from MarshalBinary's output and the same
// identifiers and configuration; no extension batch counts as received.
func RestoreHost(cfg Config, ids [][]byte, state []byte) (*Host, error) {
	if len(state) != hostStateBytes || state[0] != hostStateVersion {
		return nil, fmt.Errorf("kkrt: host state of %d bytes or unknown version: %w", len(state), psi.ErrMalformed)
	}
	h, err := NewHost(cfg, ids)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(state[1:5]))
	guestBatch := int(binary.BigEndian.Uint32(state[5:9]))
	var s [rowWords]uint64
	getRow(state[9:9+RowBytes], &s)
	p := state[9+RowBytes:]
	var codeKey, permSeed, cuckooSeed [SeedBytes]byte
	copy(codeKey[:], p[0:16])
	copy(permSeed[:], p[16:32])
	copy(cuckooSeed[:], p[32:48])
	keys := make([][SeedBytes]byte, CodeBits)
	for i := range keys {
		copy(keys[i][:], p[48+16*i:])
	}
	if err := h.setup(n, guestBatch, cuckooSeed, codeKey, permSeed, s, keys); err != nil {
		return nil, err
	}
	return h, nil
}

// Close destroys the host's secrets (choice bits, base-OT keys), after
// waiting for batches being absorbed. Later extension batches fail; tags
// already computed stay readable. It is idempotent and safe to call
// concurrently with the batch methods.
func (h *Host) Close() {
	h.live.Lock()
	defer h.live.Unlock()
	h.s = [rowWords]uint64{}
	clear(h.keys)
	h.keys, h.prg = nil, nil
}
