package secureboost

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// Payload encodings. Residues are little-endian uint64, other integers
// big-endian uint32; every decoder takes the expected shape from the
// session and rejects anything else (length, residue ≥ its prime, counts,
// bits set past the end of a bitmap).
//
//	seeded ciphertext    32-byte seed ‖ c0: L·N residues (NTT domain)
//	histogram ciphertext c0 at the k result positions: k·L residues
//	                     (coefficient domain) ‖ c1: L·N residues (NTT)
//	public key           pk0 ‖ pk1: 2·L·N residues
//	bitmap               ⌈rows/8⌉ bytes, bit k (LSB first) = row k goes left
//	gradients            part 0: u32 partitions, each u32 node ‖ bitmap;
//	                     every part: u32 ciphertexts ‖ seeded ciphertexts
//	histograms           histogram ciphertexts, in (node, group) order
//	splits               per expandable node: kind byte (0 leaf, 1 split
//	                     by another party, 2 split by you ‖ u32 feature ‖
//	                     u32 bin)
//	split reply          per split of the host: u32 split id ‖ bitmap
//	routes               u32 count, each u32 split id ‖ bitmap
//	test routes          as routes, for split ids 0..count−1
//	JSON                 hello, hello-reply, setup, finish, finish-reply

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

func jsonBytes(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// reader consumes a payload, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("payload truncated")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) byte() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// bitmap reads a bitmap over rows entries.
func (r *reader) bitmap(rows int) []byte {
	b := r.take((rows + 7) / 8)
	if b == nil {
		return nil
	}
	if rows%8 != 0 && b[len(b)-1]>>(rows%8) != 0 {
		r.fail("bits set past the end of a bitmap")
		return nil
	}
	return b
}

// end fails if anything is left.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d bytes after the payload", len(r.b))
	}
	return r.err
}

// poly reads L·N residues into p, checking each against its prime.
func (s *suite) readPoly(r *reader, p ring.Poly) {
	b := r.take(len(s.p.Q) * s.n * 8)
	if b == nil {
		return
	}
	for j, q := range s.p.Q {
		c := p.Coeffs[j]
		for i := range c {
			v := binary.LittleEndian.Uint64(b)
			if v >= q {
				r.fail("residue not reduced modulo its prime")
				return
			}
			c[i] = v
			b = b[8:]
		}
	}
}

func putPoly(b []byte, p ring.Poly) []byte {
	for _, c := range p.Coeffs {
		for _, v := range c {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func (s *suite) seededBytes() int { return 32 + len(s.p.Q)*s.n*8 }

func (s *suite) appendSeeded(b []byte, sd seeded) []byte {
	b = append(b, sd.Seed[:]...)
	return putPoly(b, sd.C0)
}

func (s *suite) readSeeded(r *reader) seeded {
	var sd seeded
	if seed := r.take(32); seed != nil {
		copy(sd.Seed[:], seed)
	}
	sd.C0 = s.ringQ.AtLevel(s.top).NewPoly()
	s.readPoly(r, sd.C0)
	return sd
}

// hresult is a histogram ciphertext as the guest receives it.
type hresult struct {
	count int
	C0    []uint64  // [output·L + prime], coefficient domain
	C1    ring.Poly // NTT domain
}

func (s *suite) hresultBytes(count int) int { return (count + s.n) * len(s.p.Q) * 8 }

func (s *suite) readHResult(r *reader, count int) hresult {
	L := len(s.p.Q)
	h := hresult{count: count, C0: make([]uint64, count*L), C1: s.ringQ.AtLevel(s.top).NewPoly()}
	b := r.take(count * L * 8)
	if b == nil {
		return h
	}
	for k := range h.C0 {
		v := binary.LittleEndian.Uint64(b[8*k:])
		if v >= s.p.Q[k%L] {
			r.fail("residue not reduced modulo its prime")
			return h
		}
		h.C0[k] = v
	}
	s.readPoly(r, h.C1)
	return h
}

func (s *suite) publicKeyBytes() int { return 2 * len(s.p.Q) * s.n * 8 }

func (s *suite) encodePublicKey(pk *rlwe.PublicKey) []byte {
	b := make([]byte, 0, s.publicKeyBytes())
	b = putPoly(b, pk.Value[0].Q)
	return putPoly(b, pk.Value[1].Q)
}

func (s *suite) decodePublicKey(b []byte) (*rlwe.PublicKey, error) {
	pk := rlwe.NewPublicKey(s.params)
	r := &reader{b: b}
	s.readPoly(r, pk.Value[0].Q)
	s.readPoly(r, pk.Value[1].Q)
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pk, nil
}

// Kinds of a node in a Splits message.
const (
	kindLeaf  = 0
	kindOther = 1 // split by the guest or another host
	kindYours = 2 // split by the recipient at (feature, bin)
)

// splitOrder is one node's entry of a Splits message.
type splitOrder struct {
	kind    byte
	feature uint32
	bin     uint32
}

func appendSplitOrders(b []byte, orders []splitOrder) []byte {
	for _, o := range orders {
		b = append(b, o.kind)
		if o.kind == kindYours {
			b = binary.BigEndian.AppendUint32(b, o.feature)
			b = binary.BigEndian.AppendUint32(b, o.bin)
		}
	}
	return b
}

// decodeSplitOrders decodes the orders of nodes nodes; valid checks a
// requested (feature, bin).
func decodeSplitOrders(b []byte, nodes int, valid func(feature, bin uint32) bool) ([]splitOrder, error) {
	r := &reader{b: b}
	out := make([]splitOrder, nodes)
	for k := range out {
		o := splitOrder{kind: r.byte()}
		switch o.kind {
		case kindLeaf, kindOther:
		case kindYours:
			o.feature, o.bin = r.u32(), r.u32()
			if r.err == nil && !valid(o.feature, o.bin) {
				r.fail("split at feature %d bin %d does not exist", o.feature, o.bin)
			}
		default:
			r.fail("node kind %d", o.kind)
		}
		out[k] = o
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("splits: %w", err)
	}
	return out, nil
}

// routeSet is a host's routing bits of an evaluation set, by split id.
type routeSet map[uint32][]byte

func appendRoutes(b []byte, ids []uint32, bms [][]byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for k, id := range ids {
		b = binary.BigEndian.AppendUint32(b, id)
		b = append(b, bms[k]...)
	}
	return b
}

// decodeRoutes decodes the routes of exactly the split ids want over rows
// rows.
func decodeRoutes(b []byte, want []uint32, rows int) (routeSet, error) {
	r := &reader{b: b}
	if n := r.u32(); r.err == nil && int(n) != len(want) {
		r.fail("routes of %d splits, want %d", n, len(want))
	}
	out := routeSet{}
	for _, id := range want {
		if got := r.u32(); r.err == nil && got != id {
			r.fail("routes of split %d, want %d", got, id)
		}
		out[id] = r.bitmap(rows)
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return out, nil
}

// partition is a node's partition as a Gradients message carries it.
type partition struct {
	node int32
	left []byte
}

// readPartitions reads the partitions section of a Gradients message:
// nodes in increasing order, each one rowsOf knows, with a bitmap over its
// rows.
func readPartitions(r *reader, rowsOf func(node int32) (int, bool)) ([]partition, error) {
	n := r.u32()
	if r.err == nil && n > 1<<MaxDepth {
		r.fail("%d partitions", n)
	}
	var out []partition
	last := int64(-1)
	for k := uint32(0); k < n && r.err == nil; k++ {
		id := r.u32()
		rows, ok := rowsOf(int32(id))
		if r.err == nil && (!ok || int64(id) <= last || id > 1<<(MaxDepth+1)) {
			r.fail("partition of node %d", id)
			break
		}
		last = int64(id)
		bm := r.bitmap(rows)
		out = append(out, partition{node: int32(id), left: bm})
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// decodeSplitReply decodes a host's answer to its splits: for each node
// it split (rows of each given), the split id — consecutive from first —
// and the partition.
func decodeSplitReply(b []byte, rows []int, first int) ([]uint32, [][]byte, error) {
	r := &reader{b: b}
	ids := make([]uint32, len(rows))
	bms := make([][]byte, len(rows))
	for k, n := range rows {
		id := r.u32()
		if r.err == nil && int64(id) != int64(first+k) {
			r.fail("split id %d, want %d", id, first+k)
		}
		ids[k] = id
		bms[k] = r.bitmap(n)
	}
	if err := r.end(); err != nil {
		return nil, nil, fmt.Errorf("split reply: %w", err)
	}
	return ids, bms, nil
}
