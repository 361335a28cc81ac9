package psijob

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// KeyCodec turns session keys into bytes and back, so they can be stored
// (encrypted) for a resume. A nil codec means keys do not survive a
// restart: a job that dies starts a new session.
type KeyCodec interface {
	Marshal(k *psi.Key) ([]byte, error)
	Unmarshal(b []byte) (*psi.Key, error)
}

// DefaultKeyCodec is psi.Key's own binary encoding.
func DefaultKeyCodec() KeyCodec { return binaryCodec{} }

type binaryCodec struct{}

func (binaryCodec) Marshal(k *psi.Key) ([]byte, error) { return k.MarshalBinary() }

func (binaryCodec) Unmarshal(b []byte) (*psi.Key, error) {
	k := new(psi.Key)
	if err := k.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return k, nil
}

// hashAndBlind computes k·H(id) of every id into a new buffer (the core
// spreads the work over every core).
func hashAndBlind(k *psi.Key, dst []byte, ids []string) ([]byte, error) {
	out := make([]byte, PointBytes*len(ids))
	b := make([][]byte, len(ids))
	for i, id := range ids {
		b[i] = []byte(id)
	}
	if err := k.HashAndBlind(dst, b, out); err != nil {
		return nil, err
	}
	return out, nil
}

// reblind validates every point of in and computes the tag T(k·P)
// (tagLen bytes) of each; an invalid point is an ErrProtocol wrapping
// psi.ErrInvalidPoint.
func reblind(k *psi.Key, in []byte, tagLen int) ([]byte, error) {
	if len(in)%PointBytes != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of points", ErrProtocol, len(in))
	}
	out := make([]byte, tagLen*(len(in)/PointBytes))
	if err := k.Reblind(in, tagLen, out); err != nil {
		if errors.Is(err, psi.ErrInvalidPoint) {
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return nil, err
	}
	return out, nil
}

// encodeInts encodes non-negative ints as uvarints.
func encodeInts(v []int) []byte {
	out := make([]byte, 0, len(v)*3)
	for _, x := range v {
		out = binary.AppendUvarint(out, uint64(x))
	}
	return out
}

// decodeInts decodes encodeInts; every value must be below limit.
func decodeInts(b []byte, limit int) ([]int, error) {
	var out []int
	for len(b) > 0 {
		x, n := binary.Uvarint(b)
		if n <= 0 || x >= uint64(limit) {
			return nil, errors.New("corrupt index list")
		}
		out = append(out, int(x))
		b = b[n:]
	}
	return out, nil
}

// encodePerms packs permutations as 4-byte little-endian values, each
// preceded by its length.
func encodePerms(perms ...[]int) []byte {
	size := 0
	for _, p := range perms {
		size += 4 + 4*len(p)
	}
	out := make([]byte, 0, size)
	for _, p := range perms {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p)))
		for _, x := range p {
			out = binary.LittleEndian.AppendUint32(out, uint32(x))
		}
	}
	return out
}

// decodePerms reverses encodePerms and checks each is a permutation.
func decodePerms(b []byte, count int) ([][]int, error) {
	var out [][]int
	for range count {
		if len(b) < 4 {
			return nil, errors.New("corrupt permutation")
		}
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if n > MaxSetSize || len(b) < 4*n {
			return nil, errors.New("corrupt permutation")
		}
		p := make([]int, n)
		seen := make([]bool, n)
		for i := range p {
			x := int(binary.LittleEndian.Uint32(b[4*i:]))
			if x >= n || seen[x] {
				return nil, errors.New("corrupt permutation")
			}
			seen[x] = true
			p[i] = x
		}
		b = b[4*n:]
		out = append(out, p)
	}
	if len(b) != 0 {
		return nil, errors.New("corrupt permutation")
	}
	return out, nil
}
