package secureboost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"runtime"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// HostConfig configures a host's side of a run.
type HostConfig struct {
	// Name is this host's name in logs.
	Name string
	// MaxTrees refuses proposals with more trees (0: MaxTrees).
	MaxTrees int
	// MinFloodBits refuses proposals with less flooding (0: MinFloodBits).
	MinFloodBits int
	// HistogramNoise, if positive, is the standard deviation (in gradient
	// units) of discrete Gaussian noise the host adds to every G and H it
	// releases (exact sampling from crypto/rand): a mitigation against
	// the guest inferring bin membership from the sums. It makes the
	// model differ from the plaintext oracle's.
	HistogramNoise float64
	// Logger receives progress (never data); nil discards.
	Logger *slog.Logger
	// Now is the clock of the model; nil means time.Now.
	Now func() time.Time
	// Workers bounds the goroutines computing ciphertexts (0: GOMAXPROCS).
	Workers int
	// CacheBytes bounds the memory spent caching the NTT-domain bin
	// layouts of the root (reused by every tree without row subsampling;
	// 0: 512 MiB, negative: no cache).
	CacheBytes int64
	// Resume, if set, continues a run from this host's checkpoint; the
	// guest's Hello must start at the tree after it, for the same model,
	// hyper-parameters and rows (ErrMismatch otherwise).
	Resume *HostCheckpoint
	// Checkpoint, if set, is called with the host's state after every
	// tree; an error ends the run.
	Checkpoint func(*HostCheckpoint) error
}

// Host is a feature provider's side of a run.
type Host struct {
	cfg   HostConfig
	table *dataset.Table
	t     Transport
	log   *slog.Logger
}

// NewHost returns a host's side of a run on table (the host's rows,
// aligned to the PSI result, no labels), talking to the guest over t.
func NewHost(cfg HostConfig, table *dataset.Table, t Transport) (*Host, error) {
	if table == nil || table.Len() == 0 {
		return nil, errors.New("secureboost: the host needs a table")
	}
	if t == nil {
		return nil, errors.New("secureboost: the host needs a transport")
	}
	if cfg.MaxTrees <= 0 {
		cfg.MaxTrees = MaxTrees
	}
	if cfg.MinFloodBits <= 0 {
		cfg.MinFloodBits = MinFloodBits
	}
	if !(cfg.HistogramNoise >= 0) || cfg.HistogramNoise > 1e6 {
		return nil, fmt.Errorf("secureboost: histogram noise %v outside [0, 1e6]", cfg.HistogramNoise)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = 512 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Host{cfg: cfg, table: table, t: t, log: log.With("component", "secureboost-host", "host", cfg.Name)}, nil
}

// Run takes part in one training run and returns the host's half of the
// model. On error it sends an Abort to the guest.
func (h *Host) Run(ctx context.Context) (*HostModel, error) {
	r := &hostRun{h: h}
	m, err := r.run(ctx)
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if !errors.Is(err, ErrAborted) {
			sendAbort(actx, h.t, err)
		}
		return nil, fmt.Errorf("secureboost host: %w", err)
	}
	return m, nil
}

type hostRun struct {
	h         *Host
	hl        hello
	s         *suite
	parts     dataset.Parts
	binning   Binning
	train     *binned
	lay       histLayout
	groups    []group
	workers   []*worker
	splits    []HostSplit
	inSample  []bool
	allRows   []int32
	noiseBits int
	sigma2    *big.Rat
	sampler   *privacy.Sampler
	rootCache [][]ring.Poly // [chunk][group], NTT-domain layouts of the root
	cacheOK   bool
}

func (r *hostRun) run(ctx context.Context) (*HostModel, error) {
	if err := r.handshake(ctx); err != nil {
		return nil, err
	}
	start := r.hl.StartTree
	trees := start
	if cp := r.h.cfg.Resume; cp != nil && cp.Stop {
		start = r.hl.Train.Trees
	}
	for t := start; t < r.hl.Train.Trees; t++ {
		stop, err := r.tree(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", t, err)
		}
		trees = t + 1
		if stop {
			break
		}
	}
	if cp := r.h.cfg.Resume; cp != nil && cp.Stop {
		trees = cp.Tree + 1
	}
	return r.finish(ctx, trees)
}

func (r *hostRun) handshake(ctx context.Context) error {
	h := r.h
	m, err := recvExpect(ctx, h.t, MsgHello, 0, 0, 0)
	if err != nil {
		return err
	}
	if err := jsonPayload(m.Payload, &r.hl); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hl := r.hl
	switch {
	case hl.Protocol != Protocol:
		return fmt.Errorf("%w: protocol %.40q", ErrMismatch, hl.Protocol)
	case len(hl.Session) != 32 || checkIDs(hl.ModelID, hl.Version) != nil:
		return fmt.Errorf("%w: session, model id or version", ErrMalformed)
	case hl.Hosts < 1 || hl.Hosts > MaxHosts || hl.HostIndex < 0 || hl.HostIndex >= hl.Hosts:
		return fmt.Errorf("%w: host %d of %d", ErrMalformed, hl.HostIndex, hl.Hosts)
	}
	if err := hl.Train.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	if hl.Train.Trees > h.cfg.MaxTrees {
		return fmt.Errorf("%w: %d trees, this host allows %d", ErrParams, hl.Train.Trees, h.cfg.MaxTrees)
	}
	if err := hl.Split.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	if err := hl.Params.Validate(); err != nil {
		return err
	}
	if hl.Params.FloodBits < h.cfg.MinFloodBits {
		return fmt.Errorf("%w: %d bits of flooding, this host wants %d", ErrParams, hl.Params.FloodBits, h.cfg.MinFloodBits)
	}
	if hl.Rows != h.table.Len() || hl.IDDigest != idDigest(h.table.IDs) {
		return fmt.Errorf("%w: the guest's aligned identifiers differ from this host's", ErrMismatch)
	}
	if err := r.checkResume(); err != nil {
		return err
	}
	r.parts = hl.Split.Apply(h.table)
	train := r.parts.Train
	if train.Len() < 2 {
		return errors.New("secureboost: the split leaves fewer than two training rows")
	}
	if r.binning, err = FitBinning(train.X, hl.Train.Bins); err != nil {
		return err
	}
	r.train = r.binning.apply(train.X)
	r.lay = r.train.layout()
	r.inSample = make([]bool, train.Len())
	r.allRows = make([]int32, train.Len())
	for i := range r.allRows {
		r.allRows[i] = int32(i)
	}
	if s := h.cfg.HistogramNoise; s > 0 {
		r.noiseBits = noiseBitsFor(s, hl.Train.GradientBits)
		sd := new(big.Rat).SetFloat64(math.Ldexp(s, hl.Train.GradientBits))
		r.sigma2 = new(big.Rat).Mul(sd, sd)
		r.sampler = privacy.NewSampler(nil)
	}
	if cp := h.cfg.Resume; cp != nil {
		r.splits = append([]HostSplit(nil), cp.Splits...)
	}
	rep := helloReply{
		Protocol: Protocol, Session: hl.Session, Features: train.X.Cols, Bins: r.train.nbins,
		Train: train.Len(), Validation: r.parts.Validation.Len(), Test: r.parts.Test.Len(),
		IDDigest: hl.IDDigest, NoiseBits: r.noiseBits, NoiseSigma: h.cfg.HistogramNoise, Splits: len(r.splits),
	}
	b, err := jsonBytes(rep)
	if err != nil {
		return err
	}
	if err := h.t.Send(ctx, Message{Type: MsgHelloReply, Payload: b}); err != nil {
		return fmt.Errorf("send hello reply: %w", err)
	}

	m, err = recvExpect(ctx, h.t, MsgSetup, 0, 0, 0)
	if err != nil {
		return err
	}
	var su setup
	if err := jsonPayload(m.Payload, &su); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if su.Budget.NoiseBits < r.noiseBits {
		return fmt.Errorf("%w: the guest sized the sums for noise of 2^%d, this host adds up to 2^%d", ErrParams, su.Budget.NoiseBits, r.noiseBits)
	}
	want, err := hl.Params.planBudget(hl.Train.GradientBits, train.Len(), su.Budget.Stride, su.Budget.NoiseBits)
	if err != nil {
		return err
	}
	if su.Budget != want {
		return fmt.Errorf("%w: the guest's noise budget differs from this host's", ErrParams)
	}
	if r.s, err = newSuite(hl.Params); err != nil {
		return err
	}
	r.s.setBudget(want)
	r.groups = groups(r.lay, r.s.perCt)
	m, err = recvExpect(ctx, h.t, MsgPublicKey, 0, 0, 0)
	if err != nil {
		return err
	}
	pk, err := r.s.decodePublicKey(m.Payload)
	if err != nil {
		return err
	}
	for range h.cfg.Workers {
		w, err := r.s.newWorker(pk)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
	}
	if hl.Train.Subsample >= 1 && h.cfg.CacheBytes > 0 {
		polyBytes := int64(len(hl.Params.Q)) * int64(r.s.n) * 8
		count := int64((train.Len()+r.s.bud.Stride-1)/r.s.bud.Stride) * int64(len(r.groups))
		r.cacheOK = count*polyBytes <= h.cfg.CacheBytes
	}
	return nil
}

// tree takes part in tree t and reports whether the guest stopped after it.
func (r *hostRun) tree(ctx context.Context, t int) (bool, error) {
	h := r.h
	cfg := r.hl.Train
	samp := sampleRows(len(r.allRows), cfg.Subsample, cfg.Seed, t)
	clear(r.inSample)
	for _, s := range samp {
		r.inSample[s] = true
	}
	root := &gnode{id: 0, rows: r.allRows, samp: samp}
	level := []*gnode{root}
	nodes := 1
	first := len(r.splits)
	for d := 0; ; d++ {
		m, err := h.t.Recv(ctx)
		if err != nil {
			return false, fmt.Errorf("receive: %w", err)
		}
		switch {
		case m.Type == MsgAbort:
			return false, fmt.Errorf("%w: %s", ErrAborted, sanitizeReason(m.Payload))
		case m.Type == MsgTreeDone && m.Tree == uint32(t) && m.Level == 0 && m.Part == 0:
			return r.treeEnd(ctx, t, first)
		case m.Type == MsgGradients && m.Tree == uint32(t) && int(m.Level) == d && m.Part == 0 && d < cfg.MaxDepth:
		default:
			return false, fmt.Errorf("%w: got %s at level %d", ErrProtocol, m, d)
		}
		lv, err := r.histograms(ctx, t, d, level, m)
		if err != nil {
			return false, err
		}
		if level, err = r.applySplits(ctx, t, lv, &nodes); err != nil {
			return false, err
		}
	}
}

// histograms handles a level's Gradients messages (m is part 0): it
// applies the partitions, plans the level, computes the computed nodes'
// encrypted histograms and sends them.
func (r *hostRun) histograms(ctx context.Context, t, d int, level []*gnode, m Message) (*levelPlan, error) {
	h := r.h
	s := r.s
	cfg := r.hl.Train
	rd := &reader{b: m.Payload}
	// Partitions of nodes split by others at the previous level.
	byID := map[int32]*gnode{}
	for i := 0; i+1 < len(level); i += 2 {
		if p := level[i].parent; p.splitHost == splitOther {
			byID[p.id] = p
		}
	}
	pts, err := readPartitions(rd, func(id int32) (int, bool) {
		p, ok := byID[id]
		if !ok {
			return 0, false
		}
		return len(p.rows), true
	})
	if err != nil {
		return nil, fmt.Errorf("gradients: %w", err)
	}
	got := map[int32]bool{}
	for _, pt := range pts {
		fillChildren(byID[pt.node], pt.left, r.inSample)
		got[pt.node] = true
	}
	lv := planLevel(t, d, level, cfg.MaxDepth)
	inPlan := map[int32]bool{}
	for _, p := range lv.parents {
		inPlan[p.id] = true
	}
	for id := range got {
		if !inPlan[id] {
			return nil, fmt.Errorf("%w: a partition of node %d, whose children cannot be split", ErrProtocol, id)
		}
	}
	if len(lv.nodes) == 0 {
		return nil, fmt.Errorf("%w: gradients for a level without expandable nodes", ErrProtocol)
	}
	// The gradient ciphertexts of the computed nodes' sampled rows.
	var rows [][][]int32
	total := 0
	for _, n := range lv.computed {
		c := chunks(n.samp, s.bud.Stride)
		rows = append(rows, c)
		total += len(c)
	}
	cts := make([]*rlwe.Ciphertext, 0, total)
	partSize := s.p.PartSize
	parts := max(1, (total+partSize-1)/partSize)
	for p := 0; p < parts; p++ {
		if p > 0 {
			var err error
			if m, err = recvExpect(ctx, h.t, MsgGradients, uint32(t), uint16(d), uint16(p)); err != nil {
				return nil, err
			}
			rd = &reader{b: m.Payload}
		}
		want := min(partSize, total-p*partSize)
		if n := rd.u32(); rd.err == nil && int(n) != want {
			rd.fail("%d ciphertexts in part %d, want %d", n, p, want)
		}
		sds := make([]seeded, 0, want)
		for range want {
			sds = append(sds, s.readSeeded(rd))
		}
		if err := rd.end(); err != nil {
			return nil, fmt.Errorf("gradients: %w", err)
		}
		base := len(cts)
		for range sds {
			cts = append(cts, rlwe.NewCiphertext(s.params, 1, s.top))
		}
		if err := parallel(len(sds), len(r.workers), func(i, _ int) error { return s.expand(sds[i], cts[base+i]) }); err != nil {
			return nil, err
		}
	}
	// One histogram ciphertext per (computed node, group).
	type item struct{ node, group, ct0 int }
	var items []item
	off := 0
	for k := range lv.computed {
		for g := range r.groups {
			items = append(items, item{k, g, off})
		}
		off += len(rows[k])
	}
	useCache := r.cacheOK && d == 0
	if useCache && r.rootCache == nil {
		r.rootCache = make([][]ring.Poly, len(rows[0]))
		for c := range r.rootCache {
			r.rootCache[c] = make([]ring.Poly, len(r.groups))
		}
	}
	out := make([][]byte, len(items))
	err = parallel(len(items), len(r.workers), func(i, wi int) error {
		it := items[i]
		w := r.workers[wi]
		g := r.groups[it.group]
		for c, cr := range rows[it.node] {
			if useCache {
				pt := r.rootCache[c][it.group]
				if pt.Coeffs == nil {
					pt = s.ringQ.AtLevel(s.top).NewPoly()
					w.layout(pt, r.train, cr, g)
					r.rootCache[c][it.group] = pt
				}
				w.accumulate(cts[it.ct0+c], pt)
				continue
			}
			w.layout(w.pt, r.train, cr, g)
			w.accumulate(cts[it.ct0+c], w.pt)
		}
		noise, err := r.noise(g.hi - g.lo)
		if err != nil {
			return err
		}
		out[i] = w.finish(g.hi-g.lo, noise, make([]byte, 0, s.hresultBytes(g.hi-g.lo)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	hparts := max(1, (len(out)+partSize-1)/partSize)
	for p := 0; p < hparts; p++ {
		part := out[min(p*partSize, len(out)):min((p+1)*partSize, len(out))]
		size := 0
		for _, o := range part {
			size += len(o)
		}
		pay := make([]byte, 0, size)
		for _, o := range part {
			pay = append(pay, o...)
		}
		if err := h.t.Send(ctx, Message{Type: MsgHistograms, Tree: uint32(t), Level: uint16(d), Part: uint16(p), Payload: pay}); err != nil {
			return nil, fmt.Errorf("send histograms: %w", err)
		}
	}
	return lv, nil
}

// noise draws the optional histogram noise of count released sums.
func (r *hostRun) noise(count int) ([]addend, error) {
	if r.sampler == nil {
		return nil, nil
	}
	lim := int64(1) << r.noiseBits
	out := make([]addend, count)
	for i := range out {
		for _, p := range []*int64{&out[i].g, &out[i].h} {
			z, err := r.sampler.DiscreteGaussian(r.sigma2)
			if err != nil {
				return nil, err
			}
			if z <= -lim || z >= lim {
				return nil, fmt.Errorf("%w: histogram noise beyond 40σ", ErrBound)
			}
			*p = z
		}
	}
	return out, nil
}

// splitOther marks a node split by another party on the host's side.
const splitOther = -2

// applySplits handles a level's Splits message and answers it; it returns
// the next level's nodes.
func (r *hostRun) applySplits(ctx context.Context, t int, lv *levelPlan, nodes *int) ([]*gnode, error) {
	h := r.h
	m, err := recvExpect(ctx, h.t, MsgSplits, uint32(t), uint16(lv.depth), 0)
	if err != nil {
		return nil, err
	}
	orders, err := decodeSplitOrders(m.Payload, len(lv.nodes), func(f, b uint32) bool {
		return int64(f) < int64(len(r.lay.nbins)) && int64(b)+1 < int64(r.lay.nbins[f])
	})
	if err != nil {
		return nil, err
	}
	var pay []byte
	var next []*gnode
	for k, o := range orders {
		n := lv.nodes[k]
		switch o.kind {
		case kindLeaf:
			continue
		case kindOther:
			addChildren(n, *nodes)
			n.splitHost = splitOther
		case kindYours:
			addChildren(n, *nodes)
			n.splitHost = r.hl.HostIndex
			f, b := int(o.feature), int(o.bin)
			col := r.train.col(f)
			bm := make([]byte, (len(n.rows)+7)/8)
			for i, row := range n.rows {
				if int(col[row]) <= b {
					bm[i/8] |= 1 << (i % 8)
				}
			}
			fillChildren(n, bm, r.inSample)
			id := uint32(len(r.splits))
			r.splits = append(r.splits, HostSplit{Feature: f, Threshold: r.binning.Cuts[f][b], Tree: t, Node: int(n.id)})
			pay = binary.BigEndian.AppendUint32(pay, id)
			pay = append(pay, bm...)
		}
		*nodes += 2
		next = append(next, n.left, n.right)
	}
	if err := h.t.Send(ctx, Message{Type: MsgSplitReply, Tree: uint32(t), Level: uint16(lv.depth), Payload: pay}); err != nil {
		return nil, fmt.Errorf("send split reply: %w", err)
	}
	return next, nil
}

// treeEnd answers TreeDone with the validation routes of the tree's
// splits, then waits for TreeEnd and checkpoints.
func (r *hostRun) treeEnd(ctx context.Context, t, first int) (bool, error) {
	h := r.h
	val := r.parts.Validation
	ids, bms := r.routes(first, len(r.splits), val)
	if err := h.t.Send(ctx, Message{Type: MsgRoutes, Tree: uint32(t), Payload: appendRoutes(nil, ids, bms)}); err != nil {
		return false, fmt.Errorf("send routes: %w", err)
	}
	m, err := recvExpect(ctx, h.t, MsgTreeEnd, uint32(t), 0, 0)
	if err != nil {
		return false, err
	}
	if len(m.Payload) != 1 || m.Payload[0]&^(flagKeep|flagStop) != 0 {
		return false, fmt.Errorf("%w: tree end flags", ErrMalformed)
	}
	stop := m.Payload[0]&flagStop != 0
	if !stop && t == r.hl.Train.Trees-1 {
		return false, fmt.Errorf("%w: the last tree ended without stop", ErrProtocol)
	}
	if h.cfg.Checkpoint != nil {
		cp := &HostCheckpoint{ModelID: r.hl.ModelID, Version: r.hl.Version, IDDigest: r.hl.IDDigest, Train: r.hl.Train,
			Split: r.hl.Split, Tree: t, Stop: stop, Splits: append([]HostSplit(nil), r.splits...)}
		if err := h.cfg.Checkpoint(cp); err != nil {
			return false, fmt.Errorf("checkpoint after tree %d: %w", t, err)
		}
	}
	return stop, nil
}

// routes returns the routing bits of splits [from, to) over the rows of t.
func (r *hostRun) routes(from, to int, t *dataset.Table) ([]uint32, [][]byte) {
	var ids []uint32
	var bms [][]byte
	for k := from; k < to; k++ {
		s := r.splits[k]
		bm := make([]byte, (t.Len()+7)/8)
		for i := 0; i < t.Len(); i++ {
			if t.X.At(i, s.Feature) <= s.Threshold {
				bm[i/8] |= 1 << (i % 8)
			}
		}
		ids = append(ids, uint32(k))
		bms = append(bms, bm)
	}
	return ids, bms
}

// finish keeps the splits of the model's trees, sends the test routes and
// the digest of the host's half.
func (r *hostRun) finish(ctx context.Context, trees int) (*HostModel, error) {
	h := r.h
	m, err := recvExpect(ctx, h.t, MsgFinish, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	var fin finish
	if err := jsonPayload(m.Payload, &fin); err != nil {
		return nil, err
	}
	keep := 0
	for keep < len(r.splits) && r.splits[keep].Tree < fin.Trees {
		keep++
	}
	if fin.Trees < 0 || fin.Trees > trees || fin.Splits != keep {
		return nil, fmt.Errorf("%w: finish keeps %d trees and %d splits; this host grew %d trees, %d splits in them", ErrProtocol, fin.Trees, fin.Splits, trees, keep)
	}
	r.splits = r.splits[:keep]
	ids, bms := r.routes(0, keep, r.parts.Test)
	if err := h.t.Send(ctx, Message{Type: MsgTestRoutes, Payload: appendRoutes(nil, ids, bms)}); err != nil {
		return nil, fmt.Errorf("send test routes: %w", err)
	}
	model := &HostModel{
		Format: HostFormat, ModelID: r.hl.ModelID, Version: r.hl.Version, HostIndex: r.hl.HostIndex,
		Features: append([]string(nil), r.parts.Train.Features...), Splits: r.splits, Trees: fin.Trees,
		TrainedAt: h.cfg.Now().UTC(), HistogramNoise: h.cfg.HistogramNoise,
	}
	digest, err := model.Digest()
	if err != nil {
		return nil, err
	}
	b, err := jsonBytes(finishReply{ModelDigest: digest, Splits: keep})
	if err != nil {
		return nil, err
	}
	if err := h.t.Send(ctx, Message{Type: MsgFinishReply, Payload: b}); err != nil {
		return nil, fmt.Errorf("send finish reply: %w", err)
	}
	h.log.Info("trained", "model", model.ModelID, "trees", fin.Trees, "splits", keep)
	return model, nil
}
