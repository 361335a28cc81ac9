package secureboost

import (
	"errors"
	"fmt"
	"math"
)

// GuestSide is the Host value of a node the guest (or, in a plaintext model,
// the only party) splits.
const GuestSide = -1

// Node is one node of a tree. Internal nodes send x left when the split's
// condition holds: for a guest split, x[Feature] ≤ Threshold; for a host
// split, the host's routing bit of SplitID is 1 (its own threshold rule,
// which only the host knows).
type Node struct {
	// Leaf marks a leaf; Value is then its weight (learning rate
	// included). An internal node's Value is the weight it would have as a
	// leaf, which explanations use.
	Leaf  bool    `json:"leaf,omitempty"`
	Value float64 `json:"value"`
	// Left and Right index the children in Tree.Nodes.
	Left  int32 `json:"left,omitempty"`
	Right int32 `json:"right,omitempty"`
	// Host is GuestSide (−1) for a guest split, else the host's index.
	Host int `json:"host"`
	// Feature and Threshold: a guest split's column and rule.
	Feature   int     `json:"feature"`
	Threshold float64 `json:"threshold"`
	// SplitID is a host split's reference in the host's half.
	SplitID uint32 `json:"split_id"`
	// Gain is the split's loss reduction (internal nodes).
	Gain float64 `json:"gain,omitempty"`
}

// Tree is one regression tree; Nodes[0] is the root.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Router answers "does row x go left at this node?" for the internal nodes
// of a walk.
type Router func(n *Node) (bool, error)

// Leaf walks the tree and returns the index of the leaf reached.
func (t *Tree) Leaf(route Router) (int, error) {
	i := 0
	for steps := 0; ; steps++ {
		if i < 0 || i >= len(t.Nodes) || steps > MaxDepth {
			return 0, errors.New("secureboost: malformed tree")
		}
		n := &t.Nodes[i]
		if n.Leaf {
			return i, nil
		}
		left, err := route(n)
		if err != nil {
			return 0, err
		}
		if left {
			i = int(n.Left)
		} else {
			i = int(n.Right)
		}
	}
}

// check validates a tree read from outside: children in range and below
// their parent (so walks terminate), depth bounded, values finite, hosts
// and features in range.
func (t *Tree) check(hosts, guestFeatures int, hostSplits []int) error {
	if len(t.Nodes) == 0 || len(t.Nodes) > 1<<(MaxDepth+1) {
		return fmt.Errorf("tree of %d nodes", len(t.Nodes))
	}
	depth := make([]int, len(t.Nodes))
	reached := make([]bool, len(t.Nodes))
	reached[0] = true
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if !reached[i] {
			return fmt.Errorf("node %d is not reachable", i)
		}
		if !finite(n.Value) || !finite(n.Gain) || !finite(n.Threshold) {
			return fmt.Errorf("node %d: non-finite value", i)
		}
		if n.Leaf {
			continue
		}
		if depth[i] >= MaxDepth {
			return fmt.Errorf("node %d deeper than %d", i, MaxDepth)
		}
		for _, c := range []int32{n.Left, n.Right} {
			if int(c) <= i || int(c) >= len(t.Nodes) || reached[c] {
				return fmt.Errorf("node %d: child %d out of order", i, c)
			}
			reached[c] = true
			depth[c] = depth[i] + 1
		}
		switch {
		case n.Host == GuestSide:
			if n.Feature < 0 || n.Feature >= guestFeatures {
				return fmt.Errorf("node %d: guest feature %d of %d", i, n.Feature, guestFeatures)
			}
		case n.Host >= 0 && n.Host < hosts:
			if int64(n.SplitID) >= int64(hostSplits[n.Host]) {
				return fmt.Errorf("node %d: split %d of host %d, which has %d", i, n.SplitID, n.Host, hostSplits[n.Host])
			}
		default:
			return fmt.Errorf("node %d: host %d of %d", i, n.Host, hosts)
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
