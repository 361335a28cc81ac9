package kkrt

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// maxCuckooAttempts bounds the cuckoo seeds NewGuest tries.
const maxCuckooAttempts = 4

// Guest is the guest's (OPRF receiver's) protocol state. Its methods are
// the steps a job runner drives; each batch method is safe for concurrent
// use on distinct batches and spreads its work over all cores:
//
//	g, _ := NewGuest(cfg, ids)        // dedup, digests, cuckoo table
//	hello := g.Hello()                 // → host
//	g.Accept(hostHello)                // base-OT keys, code key
//	u, _ := g.Extension(b)             // → host, b < ExtensionBatches()
//	rows, pos, _ := g.Match(b, tags)   // host tag batch b < TagBatches()
//
// MarshalBinary and RestoreGuest keep the state across a restart.
type Guest struct {
	cfg        Config
	sess       SessionTag
	rows       int
	dig        []digest          // unique identifiers' digests, in first-occurrence order
	first      []int32           // unique element → its first row
	dups       map[int32][]int32 // unique element → its further rows
	binCount   int
	bins       []uint32 // cuckoo table: e<<2 | hash index, or emptyBin
	cuckooSeed [SeedBytes]byte
	ot         *otSender

	accepted  bool
	m         int
	hostBatch int
	tagLen    int
	codeKey   [SeedBytes]byte
	seeds     [][2][SeedBytes]byte
	code      cipher.Block
	prg0      *columnPRG
	prg1      *columnPRG
	tags      []byte // unique element → its own OPRF value (tagLen bytes)

	mu        sync.Mutex
	extDone   []bool
	extN      int
	indexOnce sync.Once
	index     *tagIndex
	scratch   scratchPool
	// live is held for reading while an extension batch computes with the
	// seeds; Close takes it for writing.
	live sync.RWMutex
}

// NewGuest prepares the guest's side for ids (normalised identifiers; rows
// with equal identifiers are all reported): it deduplicates them, digests
// them and builds the cuckoo table under a fresh seed from crypto/rand,
// trying again with another seed if the table cannot be built.
func NewGuest(cfg Config, ids [][]byte) (*Guest, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	g, err := newGuestBase(cfg, ids)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if attempt == maxCuckooAttempts {
			return nil, fmt.Errorf("%w after %d seeds", ErrCuckoo, attempt)
		}
		var seed [SeedBytes]byte
		if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
			return nil, fmt.Errorf("kkrt: cuckoo seed: %w", err)
		}
		ok, err := g.buildTable(seed)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
	}
	if g.ot, err = newOTSender(); err != nil {
		return nil, err
	}
	return g, nil
}

func newGuestBase(cfg Config, ids [][]byte) (*Guest, error) {
	if err := checkSetSize(len(ids)); err != nil {
		return nil, err
	}
	g := &Guest{cfg: cfg, sess: SessionTagOf(cfg.Session), rows: len(ids), binCount: Bins(len(ids))}
	all := digestAll(g.sess, ids)
	// Deduplicate by digest (distinct identifiers collide with probability
	// below n²·2^-129) with an open-addressing set of element indices: the
	// digests are uniform, so their first bytes are the hash.
	logSlots := slotBits(len(all))
	slots := make([]uint32, 1<<logSlots)
	mask := uint64(len(slots) - 1)
	g.dig = all[:0]
	for row, d := range all {
		s := binary.LittleEndian.Uint64(d[:8]) >> (64 - logSlots)
		for slots[s] != 0 && g.dig[slots[s]-1] != d {
			s = (s + 1) & mask
		}
		if e := int32(slots[s]) - 1; e >= 0 {
			if g.dups == nil {
				g.dups = map[int32][]int32{}
			}
			g.dups[e] = append(g.dups[e], int32(row))
			continue
		}
		slots[s] = uint32(len(g.first)) + 1
		g.first = append(g.first, int32(row))
		g.dig = append(g.dig, d) // overwrites only entries already read
	}
	g.dig = g.dig[:len(g.first):len(g.first)]
	return g, nil
}

// digestAll digests every identifier, on all cores.
func digestAll(sess SessionTag, ids [][]byte) []digest {
	out := make([]digest, len(ids))
	_ = parallelRange(len(ids), 1024, func(lo, hi int) error {
		d := newDigester(sess)
		for i := lo; i < hi; i++ {
			out[i] = d.digest(ids[i])
		}
		return nil
	})
	return out
}

// buildTable computes the cuckoo positions under seed and places every
// unique element; false if no placement exists.
func (g *Guest) buildTable(seed [SeedBytes]byte) (bool, error) {
	g.cuckooSeed = seed
	if len(g.dig) == 0 {
		g.bins = make([]uint32, g.binCount)
		for i := range g.bins {
			g.bins[i] = emptyBin
		}
		return true, nil
	}
	ck, err := newAES(seed[:])
	if err != nil {
		return false, err
	}
	pos := make([][NumHashes]uint32, len(g.dig))
	_ = parallelRange(len(g.dig), 1024, func(lo, hi int) error {
		var tmp aesBuf
		for e := lo; e < hi; e++ {
			pos[e] = positions(ck, &g.dig[e], g.binCount, &tmp)
		}
		return nil
	})
	bins, ok := buildCuckoo(pos, g.binCount, seed)
	g.bins = bins
	return ok, nil
}

// Hello returns the guest's opening message.
func (g *Guest) Hello() GuestHello {
	h := GuestHello{Mode: g.cfg.Mode, SetSize: g.rows, BatchSize: g.cfg.BatchSize,
		NormDigest: normDigest(g.cfg.Normalization), CuckooSeed: g.cuckooSeed}
	if g.ot != nil {
		h.OTPoint = g.ot.A
	}
	return h
}

// Accept takes the host's hello: it checks the settings, derives both keys
// of every base OT and keys the code. Call it once.
func (g *Guest) Accept(h HostHello) error {
	if g.accepted {
		return fmt.Errorf("kkrt: guest: second host hello: %w", psi.ErrProtocol)
	}
	if g.ot == nil || g.ot.a == nil {
		return fmt.Errorf("kkrt: guest: no base-OT secret (closed or restored): %w", psi.ErrProtocol)
	}
	switch {
	case h.Mode != g.cfg.Mode:
		return fmt.Errorf("%w: host wants %s, guest %s", psi.ErrMismatch, h.Mode, g.cfg.Mode)
	case h.NormDigest != normDigest(g.cfg.Normalization):
		return fmt.Errorf("%w: normalisation fingerprints differ", psi.ErrMismatch)
	}
	seeds, err := g.ot.keys(g.sess, h.OTPoints)
	g.ot.destroy()
	if err != nil {
		return err
	}
	return g.setup(h.SetSize, h.BatchSize, h.CodeKey, seeds)
}

func (g *Guest) setup(m, hostBatch int, codeKey [SeedBytes]byte, seeds [][2][SeedBytes]byte) error {
	if err := checkSetSize(m); err != nil {
		return err
	}
	if hostBatch < 1 || hostBatch > MaxBatchElems {
		return fmt.Errorf("kkrt: host batch size %d out of range: %w", hostBatch, psi.ErrMalformed)
	}
	k0 := make([][SeedBytes]byte, CodeBits)
	k1 := make([][SeedBytes]byte, CodeBits)
	for i := range seeds {
		k0[i], k1[i] = seeds[i][0], seeds[i][1]
	}
	var err error
	if g.prg0, err = newColumnPRG(k0); err != nil {
		return err
	}
	if g.prg1, err = newColumnPRG(k1); err != nil {
		return err
	}
	clear(k0)
	clear(k1)
	if g.code, err = newAES(codeKey[:]); err != nil {
		return err
	}
	g.m, g.hostBatch, g.codeKey, g.seeds = m, hostBatch, codeKey, seeds
	g.tagLen = TagBytes(g.rows, m)
	g.tags = make([]byte, len(g.dig)*g.tagLen)
	g.extDone = make([]bool, g.ExtensionBatches())
	g.accepted = true
	return nil
}

// Bins returns the cuckoo table size.
func (g *Guest) Bins() int { return g.binCount }

// TagLen returns the length of one OPRF value (after Accept).
func (g *Guest) TagLen() int { return g.tagLen }

// PeerSize returns the host's set size (after Accept).
func (g *Guest) PeerSize() int { return g.m }

// ExtensionBatches returns the number of extension batches: the bins in
// batches of the guest's batch size, none if either set is empty.
func (g *Guest) ExtensionBatches() int {
	if g.rows == 0 || g.m == 0 {
		return 0
	}
	return batchCount(g.binCount, g.cfg.BatchSize)
}

// ExtensionBatchLen returns the number of bins (rows) in extension batch b.
func (g *Guest) ExtensionBatchLen(b int) int {
	lo, hi := batchRange(g.binCount, g.cfg.BatchSize, b)
	return hi - lo
}

// TagBatches returns the number of host tag batches, none if either set is
// empty.
func (g *Guest) TagBatches() int {
	if g.rows == 0 || g.m == 0 {
		return 0
	}
	return batchCount(g.m, g.hostBatch)
}

// TagBatchLen returns the number of host elements in tag batch b.
func (g *Guest) TagBatchLen(b int) int {
	lo, hi := batchRange(g.m, g.hostBatch, b)
	return hi - lo
}

// Extension computes extension batch b: the rows u_j = t_j ⊕ t'_j ⊕ C(x_j)
// of its bins (RowBytes each, bins in order), and records the guest's own
// OPRF values H(t_j) of the elements in those bins. Calling it again gives
// the same bytes (a resumed session re-sends them).
func (g *Guest) Extension(b int) ([]byte, error) {
	g.live.RLock()
	defer g.live.RUnlock()
	if !g.accepted {
		return nil, fmt.Errorf("kkrt: guest: extension before the host's hello: %w", ErrNotReady)
	}
	if b < 0 || b >= g.ExtensionBatches() {
		return nil, fmt.Errorf("kkrt: guest: extension batch %d of %d: %w", b, g.ExtensionBatches(), psi.ErrProtocol)
	}
	lo, hi := batchRange(g.binCount, g.cfg.BatchSize, b)
	out := make([]byte, (hi-lo)*RowBytes)
	s := g.scratch.get(hi - lo)
	defer g.scratch.put(s)
	words := s.words
	// Columns: one CTR stream per column and batch.
	_ = parallelRange(CodeBits, 16, func(c0, c1 int) error {
		ks := make([]byte, 8*words)
		tmp := make([]uint64, words)
		for c := c0; c < c1; c++ {
			a := s.colsA[c*words : (c+1)*words]
			g.prg0.fill(c, lo, a, ks)
			g.prg1.fill(c, lo, tmp, ks)
			bc := s.colsB[c*words : (c+1)*words]
			for w := range a {
				bc[w] = a[w] ^ tmp[w]
			}
		}
		return nil
	})
	// Rows, by blocks of 64 bins: t_j (rowsA) and t_j ⊕ t'_j (rowsB).
	_ = parallelRange(words, 4, func(w0, w1 int) error {
		transposeColumns(s.colsA, words, w0, w1, s.rowsA)
		transposeColumns(s.colsB, words, w0, w1, s.rowsB)
		var cw [rowWords]uint64
		var tmp aesBuf
		th := newTagHasher()
		for j := lo + 64*w0; j < min(lo+64*w1, hi); j++ {
			r := (j - lo) * rowWords
			u := (*[rowWords]uint64)(s.rowsB[r : r+rowWords])
			if v := g.bins[j]; v != emptyBin {
				e, i := int(v>>2), int(v&3)
				codeword(g.code, &g.dig[e], i, &cw, &tmp)
				for w := range u {
					u[w] ^= cw[w]
				}
				th.tag((*[rowWords]uint64)(s.rowsA[r:r+rowWords]), g.tags[e*g.tagLen:(e+1)*g.tagLen])
			}
			putRow(out[(j-lo)*RowBytes:], u)
		}
		return nil
	})
	g.mu.Lock()
	if !g.extDone[b] {
		g.extDone[b] = true
		g.extN++
	}
	g.mu.Unlock()
	return out, nil
}

// extScratch holds one batch's column and row matrices.
type extScratch struct {
	words        int // 64-bin words per column
	colsA, colsB []uint64
	rowsA, rowsB []uint64
}

// scratchPool recycles extScratch buffers between batches.
type scratchPool struct{ p sync.Pool }

func (p *scratchPool) get(bins int) *extScratch {
	words := roundBatch(bins) / 64
	s, ok := p.p.Get().(*extScratch)
	if !ok || cap(s.colsA) < CodeBits*words {
		s = &extScratch{
			colsA: make([]uint64, CodeBits*words),
			colsB: make([]uint64, CodeBits*words),
			rowsA: make([]uint64, words*64*rowWords),
			rowsB: make([]uint64, words*64*rowWords),
		}
	}
	s.words = words
	s.colsA, s.colsB = s.colsA[:CodeBits*words], s.colsB[:CodeBits*words]
	s.rowsA, s.rowsB = s.rowsA[:words*64*rowWords], s.rowsB[:words*64*rowWords]
	return s
}

func (p *scratchPool) put(s *extScratch) { p.p.Put(s) }

// Match looks up host tag batch b (NumHashes·TagLen() bytes per host
// element) among the guest's own OPRF values. It returns the guest rows
// that matched (every row of a duplicated identifier; unordered, possibly
// repeated across batches) and the matched host positions (ascending, each
// once). It needs every extension batch computed here first.
func (g *Guest) Match(b int, tags []byte) (guestRows, hostPositions []int, err error) {
	if b < 0 || b >= g.TagBatches() {
		return nil, nil, fmt.Errorf("kkrt: guest: tag batch %d of %d: %w", b, g.TagBatches(), psi.ErrProtocol)
	}
	lo, hi := batchRange(g.m, g.hostBatch, b)
	width := NumHashes * g.tagLen
	if len(tags) != (hi-lo)*width {
		return nil, nil, fmt.Errorf("kkrt: guest: tag batch %d of %d bytes, want %d×%d: %w", b, len(tags), hi-lo, width, psi.ErrProtocol)
	}
	g.mu.Lock()
	complete := g.extN == len(g.extDone)
	g.mu.Unlock()
	if !complete {
		return nil, nil, fmt.Errorf("kkrt: guest: matching before every extension batch was computed: %w", ErrNotReady)
	}
	g.indexOnce.Do(g.buildIndex)
	type found struct{ rows, pos []int }
	parts := make([]found, runtime.GOMAXPROCS(0))
	_ = parallelWorkers(hi-lo, 1024, func(w, k0, k1 int) error {
		var f found
		for k := k0; k < k1; k++ {
			hit := false
			for i := range NumHashes {
				off := (k*NumHashes + i) * g.tagLen
				g.index.lookup(tags[off:off+g.tagLen], i, func(e int32) {
					hit = true
					f.rows = append(f.rows, int(g.first[e]))
					for _, r := range g.dups[e] {
						f.rows = append(f.rows, int(r))
					}
				})
			}
			if hit {
				f.pos = append(f.pos, lo+k)
			}
		}
		parts[w] = f
		return nil
	})
	for _, f := range parts {
		guestRows = append(guestRows, f.rows...)
		hostPositions = append(hostPositions, f.pos...)
	}
	return guestRows, hostPositions, nil
}

func (g *Guest) buildIndex() {
	hidx := make([]uint8, len(g.dig))
	for _, v := range g.bins {
		if v != emptyBin {
			hidx[v>>2] = uint8(v & 3)
		}
	}
	g.index = newTagIndex(g.tags, g.tagLen, hidx)
}

// Result assembles the guest's result from the rows Match returned.
func (g *Guest) Result(matchedRows []int) psi.Result {
	seen := make([]bool, g.rows)
	rows := make([]int, 0, len(matchedRows))
	for _, r := range matchedRows {
		if r >= 0 && r < g.rows && !seen[r] {
			seen[r] = true
		}
	}
	for r, ok := range seen {
		if ok {
			rows = append(rows, r)
		}
	}
	return psi.Result{Learned: true, Count: len(rows), Indices: rows, PeerSize: g.m}
}

// guestStateVersion prefixes MarshalBinary's output.
const guestStateVersion = 1

// guestStateBytes is the size of MarshalBinary's output.
const guestStateBytes = 1 + 4 + 4 + 2*SeedBytes + CodeBits*2*SeedBytes

// MarshalBinary returns the guest's secret session state after Accept: the
// host's set and batch sizes, the code key, the cuckoo seed and both keys of
// every base OT. With the same identifiers, RestoreGuest rebuilds the
// guest from it and recomputes every extension batch bit for bit. It is a
// secret: store it only encrypted, and clear the copy.
func (g *Guest) MarshalBinary() ([]byte, error) {
	g.live.RLock()
	defer g.live.RUnlock()
	if !g.accepted || g.seeds == nil {
		return nil, fmt.Errorf("kkrt: guest state before Accept or after Close: %w", ErrNotReady)
	}
	b := make([]byte, 0, guestStateBytes)
	b = append(b, guestStateVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(g.m))
	b = binary.BigEndian.AppendUint32(b, uint32(g.hostBatch))
	b = append(b, g.codeKey[:]...)
	b = append(b, g.cuckooSeed[:]...)
	for _, s := range g.seeds {
		b = append(b, s[0][:]...)
		b = append(b, s[1][:]...)
	}
	return b, nil
}

// RestoreGuest rebuilds a guest from MarshalBinary's output and the same
// identifiers and configuration. The restored guest has no base-OT secret
// (the OTs are done); it recomputes the cuckoo table from the stored seed.
func RestoreGuest(cfg Config, ids [][]byte, state []byte) (*Guest, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	if len(state) != guestStateBytes || state[0] != guestStateVersion {
		return nil, fmt.Errorf("kkrt: guest state of %d bytes or unknown version: %w", len(state), psi.ErrMalformed)
	}
	g, err := newGuestBase(cfg, ids)
	if err != nil {
		return nil, err
	}
	m := int(binary.BigEndian.Uint32(state[1:5]))
	hostBatch := int(binary.BigEndian.Uint32(state[5:9]))
	var codeKey, seed [SeedBytes]byte
	copy(codeKey[:], state[9:25])
	copy(seed[:], state[25:41])
	ok, err := g.buildTable(seed)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kkrt: restore guest: the stored cuckoo seed does not place these identifiers: %w", psi.ErrMismatch)
	}
	seeds := make([][2][SeedBytes]byte, CodeBits)
	p := state[41:]
	for i := range seeds {
		copy(seeds[i][0][:], p[32*i:])
		copy(seeds[i][1][:], p[32*i+16:])
	}
	if err := g.setup(m, hostBatch, codeKey, seeds); err != nil {
		return nil, err
	}
	return g, nil
}

// Close destroys the guest's secrets (base-OT keys and scalar), after
// waiting for extension batches being computed. Later extension batches
// fail; matching still works. It is idempotent and safe to call
// concurrently with the batch methods.
func (g *Guest) Close() {
	g.live.Lock()
	defer g.live.Unlock()
	g.ot.destroy()
	clear(g.seeds)
	g.seeds = nil
	g.prg0, g.prg1 = nil, nil
	g.accepted = false
}
