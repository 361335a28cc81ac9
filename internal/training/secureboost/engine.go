package secureboost

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// The boosting engine. One implementation grows the trees of the
// plaintext oracle (the joined data as one party, no hosts) and of the
// federated guest (its own features locally, each host's through the
// protocol), so that the two compute the same model: the same gradients,
// the same integer histograms, the same gains in the same order, the same
// tie-breaking (guest features first, then host 0's, host 1's, ...; within
// a party by feature, then bin; the first maximum wins), the same float
// sums for leaf weights.

// partyHist is one party's histograms of one node: exact integer sums of
// the quantised gradients (G) and hessians (H) per (feature, bin), in the
// party's flat layout.
type partyHist struct {
	G, H []int64
}

func newPartyHist(n int) partyHist { return partyHist{G: make([]int64, n), H: make([]int64, n)} }

// sub sets h = a − b.
func (h partyHist) sub(a, b partyHist) {
	for i := range h.G {
		h.G[i] = a.G[i] - b.G[i]
		h.H[i] = a.H[i] - b.H[i]
	}
}

// gnode is a node while its tree grows.
type gnode struct {
	id          int32
	depth       int
	rows        []int32 // every training row in the node, ascending
	samp        []int32 // the sampled ones (the histograms' rows)
	parent      *gnode
	left, right *gnode
	computed    bool        // its histograms are computed, not derived
	hist        []partyHist // [0] the guest, [1+h] host h
	split       bool
	splitHost   int    // who split it (GuestSide or a host)
	leftBits    []byte // its partition: bit k set when rows[k] goes left
}

// expandable reports whether the node can be split at all: it is above
// the last level and has two sampled rows. Every party can tell (row
// counts are known to all), so hosts and guest agree on the level plan.
func (n *gnode) expandable(maxDepth int) bool { return n.depth < maxDepth && len(n.samp) >= 2 }

// levelPlan is one level of a growing tree.
type levelPlan struct {
	tree, depth int
	// nodes are the expandable nodes of the level, by id.
	nodes []*gnode
	// computed are the nodes whose histograms are built (the root, or the
	// smaller child of each split with an expandable child), by id; every
	// other node of nodes is derived as parent − sibling.
	computed []*gnode
	// parents are the nodes split at the previous level that have an
	// expandable child, by id: hosts that did not split them need their
	// partitions.
	parents []*gnode
}

// planLevel finds the expandable nodes of a level and which histograms to
// compute. The smaller child (by sampled rows; the left one on a tie) is
// computed even if it is not expandable itself, for its sibling's sake.
func planLevel(t, d int, level []*gnode, maxDepth int) *levelPlan {
	lv := &levelPlan{tree: t, depth: d}
	for _, n := range level {
		if n.expandable(maxDepth) {
			lv.nodes = append(lv.nodes, n)
		}
	}
	if len(lv.nodes) == 0 {
		return lv
	}
	if d == 0 {
		lv.computed = lv.nodes
		lv.nodes[0].computed = true
		return lv
	}
	for i := 0; i+1 < len(level); i += 2 {
		l, r := level[i], level[i+1]
		if !l.expandable(maxDepth) && !r.expandable(maxDepth) {
			continue
		}
		lv.parents = append(lv.parents, l.parent)
		small := l
		if len(r.samp) < len(l.samp) {
			small = r
		}
		small.computed = true
		lv.computed = append(lv.computed, small)
	}
	return lv
}

// splitChoice is the best split found so far for a node.
type splitChoice struct {
	ok      bool
	host    int // GuestSide or a host index
	feature int
	bin     int
	gain    float64
}

// scan looks for a better split among the first cols of a party's
// features.
func (c *Config) scan(host int, lay histLayout, h partyHist, cols int, best *splitChoice) {
	unit := math.Ldexp(1, -c.GradientBits)
	lambda, mcw := c.L2, c.MinChildWeight
	for j, nb := range lay.nbins[:cols] {
		off := lay.offs[j]
		var gt, ht int64
		for b := 0; b < nb; b++ {
			gt += h.G[off+b]
			ht += h.H[off+b]
		}
		gtf, htf := float64(gt)*unit, float64(ht)*unit
		parent := gtf * gtf / (htf + lambda)
		var gl, hl int64
		for b := 0; b+1 < nb; b++ {
			gl += h.G[off+b]
			hl += h.H[off+b]
			gr, hr := gt-gl, ht-hl
			if hl <= 0 || hr <= 0 {
				continue
			}
			glf, hlf := float64(gl)*unit, float64(hl)*unit
			grf, hrf := float64(gr)*unit, float64(hr)*unit
			if hlf < mcw || hrf < mcw {
				continue
			}
			gain := 0.5*(glf*glf/(hlf+lambda)+grf*grf/(hrf+lambda)-parent) - c.MinSplitGain
			if gain > 0 && (!best.ok || gain > best.gain) {
				*best = splitChoice{ok: true, host: host, feature: j, bin: b, gain: gain}
			}
		}
	}
}

// decision is what the guest decided for an expandable node.
type decision struct {
	node  *gnode
	split bool
	splitChoice
	// For a host split, filled in by the host's answer: its split id, and
	// the partition of the node's rows (bit k set: rows[k] goes left).
	splitID uint32
	left    []byte
}

// Importance is the summed gain and number of splits of one feature (or,
// for a host in the guest's card, of all its features together).
type Importance struct {
	Name   string  `json:"name"`
	Gain   float64 `json:"gain"`
	Splits int     `json:"splits"`
}

// TreeStats records one boosting round.
type TreeStats struct {
	Tree       int        `json:"tree"`
	Nodes      int        `json:"nodes"`
	Leaves     int        `json:"leaves"`
	HostSplits int        `json:"host_splits"`
	Validation lr.Metrics `json:"validation"`
	Seconds    float64    `json:"seconds"`
}

// remotes is the guest's link to its hosts during a tree; the plaintext
// oracle has none.
type remotes interface {
	hostCount() int
	// histograms sends the hosts what level lv needs (the partitions
	// they lack, the encrypted gradients of the computed nodes) and
	// returns hist[h][k], host h's histograms of lv.computed[k].
	histograms(ctx context.Context, lv *levelPlan) ([][]partyHist, error)
	// splits tells every host the level's decisions and fills in, for
	// each host split, its split id and partition.
	splits(ctx context.Context, lv *levelPlan, dec []decision) error
	// treeDone ends tree t at the hosts and returns each host's
	// validation routing bits for the splits it made in the tree, by
	// split id.
	treeDone(ctx context.Context, t int) ([]map[uint32][]byte, error)
}

// booster is the guest's side of boosting: labels, its binned features,
// the scores so far.
type booster struct {
	cfg      Config
	binning  Binning
	train    *binned
	lay      histLayout
	hostLay  []histLayout // per host, from its HelloReply
	y        []float64
	neg, pos float64
	valX     dataset.Matrix // raw guest features of the validation rows
	valY     []float64
	nVal     int

	base float64
	F    []float64 // training scores
	Fval []float64 // validation scores

	g, h     []float64
	gq, hq   []int64
	inSample []bool
	allRows  []int32

	// guestOnlyCols is the number of leading columns a guest-only first
	// tree may split on: the guest's features (the oracle's joined data
	// starts with them).
	guestOnlyCols int

	onGradients func() // test hook

	trees   []Tree
	history []TreeStats
	stop    *lr.EarlyStopping
	best    int // number of trees kept
}

// newBooster prepares boosting on the guest's training rows.
func newBooster(cfg Config, binning Binning, train, val *dataset.Table) (*booster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	neg, pos, err := lr.ClassWeights(cfg.ClassWeights, train.Labels)
	if err != nil {
		return nil, err
	}
	b := &booster{
		cfg: cfg, binning: binning, train: binning.apply(train.X), y: train.Labels,
		neg: neg, pos: pos, valX: val.X, valY: val.Labels, nVal: val.Len(),
		stop: lr.NewEarlyStopping(lr.Config{Patience: cfg.Patience, MinDelta: cfg.MinDelta}),
	}
	b.lay = b.train.layout()
	b.guestOnlyCols = train.X.Cols
	n := train.Len()
	var wy, wn float64
	for _, v := range b.y {
		if v == 1 {
			wy += pos
		} else {
			wn += neg
		}
	}
	if wy == 0 || wn == 0 {
		return nil, fmt.Errorf("secureboost: the training rows have a single class")
	}
	b.base = math.Log(wy / wn)
	b.F = make([]float64, n)
	for i := range b.F {
		b.F[i] = b.base
	}
	b.Fval = make([]float64, b.nVal)
	for i := range b.Fval {
		b.Fval[i] = b.base
	}
	b.g, b.h = make([]float64, n), make([]float64, n)
	b.gq, b.hq = make([]int64, n), make([]int64, n)
	b.inSample = make([]bool, n)
	b.allRows = make([]int32, n)
	for i := range b.allRows {
		b.allRows[i] = int32(i)
	}
	return b, nil
}

// setHosts records the hosts' histogram layouts.
func (b *booster) setHosts(nbins [][]int) {
	b.hostLay = make([]histLayout, len(nbins))
	for h, nb := range nbins {
		b.hostLay[h] = newHistLayout(nb)
	}
}

// gradients computes g = c·(p − y) and h = c·p·(1 − p) of the log-loss at
// the current scores, and their fixed-point forms.
func (b *booster) gradients() {
	scale := math.Ldexp(1, b.cfg.GradientBits)
	for i, f := range b.F {
		p := lr.Logistic(f)
		c := b.neg
		if b.y[i] == 1 {
			c = b.pos
		}
		g := c * (p - b.y[i])
		h := c * p * (1 - p)
		b.g[i], b.h[i] = g, h
		b.gq[i] = int64(math.Round(g * scale))
		b.hq[i] = int64(math.Round(h * scale))
	}
}

// sampleRows returns the rows tree t is grown on, ascending: every row
// when rate is 1, else each row with probability rate, from a generator
// seeded by (seed, t). Every party computes the same sample.
func sampleRows(n int, rate float64, seed uint64, t int) []int32 {
	out := make([]int32, 0, n)
	if rate >= 1 {
		for i := 0; i < n; i++ {
			out = append(out, int32(i))
		}
		return out
	}
	rng := rand.New(rand.NewPCG(seed, 0x73616d70<<32|uint64(uint32(t))))
	for i := 0; i < n; i++ {
		if rng.Float64() < rate {
			out = append(out, int32(i))
		}
	}
	return out
}

// histogram sums the quantised gradients of rows per (feature, bin).
func (m *binned) histogram(rows []int32, gq, hq []int64, out partyHist) {
	for j := 0; j < m.cols; j++ {
		col := m.col(j)
		off := m.offs[j]
		G, H := out.G[off:off+m.nbins[j]], out.H[off:off+m.nbins[j]]
		for _, r := range rows {
			b := col[r]
			G[b] += gq[r]
			H[b] += hq[r]
		}
	}
}

// weight returns −η·Σg/(Σh + λ) over the node's sampled rows, summed in
// row order.
func (b *booster) weight(n *gnode) float64 {
	var g, h float64
	for _, r := range n.samp {
		g += b.g[r]
		h += b.h[r]
	}
	return -b.cfg.LearningRate * g / (h + b.cfg.L2)
}

// splitRows splits rows (and their sampled subset) by the bitmap bm.
func splitRows(rows []int32, bm []byte, inSample []bool) (left, right, leftSamp, rightSamp []int32) {
	for k, r := range rows {
		if bit(bm, k) {
			left = append(left, r)
			if inSample[r] {
				leftSamp = append(leftSamp, r)
			}
		} else {
			right = append(right, r)
			if inSample[r] {
				rightSamp = append(rightSamp, r)
			}
		}
	}
	return left, right, leftSamp, rightSamp
}

// addChildren gives n two children with the next ids of tree (rows not
// yet known).
func addChildren(n *gnode, nodes int) {
	li := int32(nodes)
	n.left = &gnode{id: li, depth: n.depth + 1, parent: n}
	n.right = &gnode{id: li + 1, depth: n.depth + 1, parent: n}
	n.split = true
}

// fillChildren sets the rows of n's children from its partition.
func fillChildren(n *gnode, left []byte, inSample []bool) {
	n.leftBits = left
	n.left.rows, n.right.rows, n.left.samp, n.right.samp = splitRows(n.rows, left, inSample)
}

// partition splits n's rows by the bitmap left and creates its children.
func (b *booster) partition(n *gnode, left []byte, tree *Tree) {
	addChildren(n, len(tree.Nodes))
	tree.Nodes = append(tree.Nodes, Node{}, Node{})
	tree.Nodes[n.id].Left, tree.Nodes[n.id].Right = n.left.id, n.right.id
	fillChildren(n, left, b.inSample)
}

// guestPartition is the bitmap of a guest split over n's rows.
func (b *booster) guestPartition(n *gnode, feature, bin int) []byte {
	col := b.train.col(feature)
	out := make([]byte, (len(n.rows)+7)/8)
	for k, r := range n.rows {
		if int(col[r]) <= bin {
			out[k/8] |= 1 << (k % 8)
		}
	}
	return out
}

func bit(bm []byte, k int) bool { return bm[k/8]>>(k%8)&1 == 1 }

// growTree grows tree t on the current scores and adds it to the model;
// r links to the hosts (nil for the oracle).
func (b *booster) growTree(ctx context.Context, t int, r remotes) (TreeStats, error) {
	start := time.Now()
	nh := 0
	if r != nil {
		nh = r.hostCount()
	}
	guestOnly := b.cfg.FirstTreeGuestOnly && t == 0
	useHosts := nh > 0 && !guestOnly
	guestCols := b.train.cols
	if guestOnly {
		guestCols = b.guestOnlyCols
	}
	b.gradients()
	if b.onGradients != nil {
		b.onGradients()
	}
	samp := sampleRows(len(b.F), b.cfg.Subsample, b.cfg.Seed, t)
	clear(b.inSample)
	for _, s := range samp {
		b.inSample[s] = true
	}
	root := &gnode{id: 0, rows: b.allRows, samp: samp}
	tree := Tree{Nodes: []Node{{}}}
	all := []*gnode{root}
	level := []*gnode{root}
	st := TreeStats{Tree: t}
	for d := 0; d < b.cfg.MaxDepth; d++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		lv := planLevel(t, d, level, b.cfg.MaxDepth)
		if len(lv.nodes) == 0 {
			break
		}
		parties := 1
		if useHosts {
			parties += nh
		}
		for _, n := range lv.computed {
			n.hist = make([]partyHist, parties)
			n.hist[0] = newPartyHist(b.lay.total)
			b.train.histogram(n.samp, b.gq, b.hq, n.hist[0])
		}
		if useHosts {
			hh, err := r.histograms(ctx, lv)
			if err != nil {
				return st, fmt.Errorf("tree %d level %d: %w", t, d, err)
			}
			for h := range hh {
				for k, n := range lv.computed {
					n.hist[1+h] = hh[h][k]
				}
			}
		}
		for _, n := range lv.nodes {
			if n.computed {
				continue
			}
			sib := n.parent.left
			if sib == n {
				sib = n.parent.right
			}
			n.hist = make([]partyHist, parties)
			for p := range n.hist {
				n.hist[p] = newPartyHist(len(sib.hist[p].G))
				n.hist[p].sub(n.parent.hist[p], sib.hist[p])
			}
		}
		decs := make([]decision, len(lv.nodes))
		for k, n := range lv.nodes {
			var best splitChoice
			b.cfg.scan(GuestSide, b.lay, n.hist[0], guestCols, &best)
			if useHosts {
				for h := 0; h < nh; h++ {
					b.cfg.scan(h, b.hostLay[h], n.hist[1+h], len(b.hostLay[h].nbins), &best)
				}
			}
			decs[k] = decision{node: n, split: best.ok, splitChoice: best}
		}
		if useHosts {
			if err := r.splits(ctx, lv, decs); err != nil {
				return st, fmt.Errorf("tree %d level %d: %w", t, d, err)
			}
		}
		for _, p := range lv.parents {
			p.hist = nil
		}
		level = level[:0:0]
		for _, dc := range decs {
			n := dc.node
			if !dc.split {
				continue
			}
			tn := &tree.Nodes[n.id]
			tn.Host, tn.Gain = dc.host, dc.gain
			left := dc.left
			if dc.host == GuestSide {
				tn.Feature = dc.feature
				tn.Threshold = b.binning.Cuts[dc.feature][dc.bin]
				left = b.guestPartition(n, dc.feature, dc.bin)
			} else {
				tn.Feature, tn.SplitID = -1, dc.splitID
				st.HostSplits++
			}
			n.splitHost = dc.host
			b.partition(n, left, &tree)
			level = append(level, n.left, n.right)
			all = append(all, n.left, n.right)
		}
		for _, n := range lv.computed {
			if !n.expandable(b.cfg.MaxDepth) {
				n.hist = nil
			}
		}
	}
	for _, n := range all {
		tn := &tree.Nodes[n.id]
		tn.Value = b.weight(n)
		if !n.split {
			tn.Leaf = true
			st.Leaves++
			for _, r := range n.rows {
				b.F[r] += tn.Value
			}
		}
	}
	st.Nodes = len(tree.Nodes)
	var routes []map[uint32][]byte
	if r != nil {
		var err error
		if routes, err = r.treeDone(ctx, t); err != nil {
			return st, fmt.Errorf("tree %d: %w", t, err)
		}
	}
	for i := 0; i < b.nVal; i++ {
		leaf, err := tree.Leaf(b.valRouter(i, routes))
		if err != nil {
			return st, err
		}
		b.Fval[i] += tree.Nodes[leaf].Value
	}
	b.trees = append(b.trees, tree)
	if b.nVal > 0 {
		st.Validation = lr.Evaluate(b.Fval, b.valY)
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// valRouter routes validation row i: guest splits on its raw features,
// host splits by the host's routing bits.
func (b *booster) valRouter(i int, routes []map[uint32][]byte) Router {
	return func(n *Node) (bool, error) {
		if n.Host == GuestSide {
			return b.valX.At(i, n.Feature) <= n.Threshold, nil
		}
		if n.Host >= len(routes) {
			return false, fmt.Errorf("%w: no routes of host %d", ErrProtocol, n.Host)
		}
		bm, ok := routes[n.Host][n.SplitID]
		if !ok {
			return false, fmt.Errorf("%w: host %d sent no routes of split %d", ErrProtocol, n.Host, n.SplitID)
		}
		return bit(bm, i), nil
	}
}

// observe applies early stopping after tree t and reports whether to keep
// the trees so far and whether to stop.
func (b *booster) observe(t int, st TreeStats) (keep, stop bool) {
	if b.cfg.Patience == 0 || b.nVal == 0 || math.IsNaN(st.Validation.AUC) {
		b.best = t + 1
		return true, false
	}
	keep, stop = b.stop.Observe(t, -st.Validation.AUC)
	if keep {
		b.best = t + 1
	}
	return keep, stop
}
