package kkrt

import "encoding/binary"

// emptyBin marks a free cuckoo bin.
const emptyBin = ^uint32(0)

// maxWalk bounds the random-walk evictions of one insertion before the
// exact search takes over.
const maxWalk = 200

// cuckoo places elements in bins. Bin b holds e<<2 | i (element e, placed
// by its hash function i) or emptyBin. Insertion is a random walk (evict a
// random occupant, up to maxWalk times) and, if that fails, a breadth-first
// search for an augmenting path, so insertion fails only when no placement
// of the elements exists at all (Kuhn's algorithm: a matching with no
// augmenting path from the one free element is maximum). The failure
// probability is therefore that of the hash values alone; see Bins.
type cuckoo struct {
	bins []uint32
	pos  [][NumHashes]uint32
	rng  uint64 // xorshift state: eviction choices need no secrecy
}

// buildCuckoo places every element of pos in binCount bins; ok is false
// when some element cannot be placed.
func buildCuckoo(pos [][NumHashes]uint32, binCount int, seed [SeedBytes]byte) (bins []uint32, ok bool) {
	c := &cuckoo{bins: make([]uint32, binCount), pos: pos, rng: binary.LittleEndian.Uint64(seed[:8]) | 1}
	for i := range c.bins {
		c.bins[i] = emptyBin
	}
	for e := range pos {
		if !c.insert(uint32(e)) {
			return nil, false
		}
	}
	return c.bins, true
}

func (c *cuckoo) next() uint64 {
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	return c.rng
}

// hashOf returns the hash index by which element e reaches bin b.
func (c *cuckoo) hashOf(e, b uint32) uint32 {
	for i, p := range c.pos[e] {
		if p == b {
			return uint32(i)
		}
	}
	panic("kkrt: cuckoo: element does not hash to bin") // unreachable: callers pass one of e's bins
}

func (c *cuckoo) insert(e uint32) bool {
	from := emptyBin // the bin e was just evicted from
	for range maxWalk {
		for i, b := range c.pos[e] {
			if c.bins[b] == emptyBin {
				c.bins[b] = e<<2 | uint32(i)
				return true
			}
		}
		// All bins full: evict a random occupant, not the one we came from.
		i := uint32(c.next() % NumHashes)
		if c.pos[e][i] == from {
			i = (i + 1 + uint32(c.next()%(NumHashes-1))) % NumHashes
		}
		b := c.pos[e][i]
		evicted := c.bins[b] >> 2
		c.bins[b] = e<<2 | i
		e, from = evicted, b
	}
	return c.augment(e)
}

// augment places e by a breadth-first search for a path of evictions
// ending in a free bin.
func (c *cuckoo) augment(e uint32) bool {
	const root = emptyBin
	parent := map[uint32]uint32{} // bin → the bin whose occupant would move into it, or root
	var queue []uint32
	for _, b := range c.pos[e] {
		if _, seen := parent[b]; !seen {
			parent[b] = root
			queue = append(queue, b)
		}
	}
	for len(queue) > 0 {
		b := queue[0]
		queue = queue[1:]
		if c.bins[b] == emptyBin {
			// Shift occupants forward along the path, then place e.
			for cur := b; ; {
				par := parent[cur]
				if par == root {
					c.bins[cur] = e<<2 | c.hashOf(e, cur)
					return true
				}
				o := c.bins[par] >> 2
				c.bins[cur] = o<<2 | c.hashOf(o, cur)
				cur = par
			}
		}
		o := c.bins[b] >> 2
		for _, nb := range c.pos[o] {
			if _, seen := parent[nb]; !seen {
				parent[nb] = b
				queue = append(queue, nb)
			}
		}
	}
	return false
}
