package secureboost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// HostPeer is the guest's link to one host.
type HostPeer struct {
	// Name identifies the host in the model card (e.g. its node name).
	Name      string
	Transport Transport
}

// GuestConfig configures the guest's side of a run.
type GuestConfig struct {
	// ModelID names the model; empty draws a random one.
	ModelID string
	// Version of the model; empty means "1".
	Version string
	// Train are the hyper-parameters; the zero value means DefaultConfig().
	Train Config
	// Split is the train/validation/test split every party computes; the
	// zero value means dataset.DefaultSplit().
	Split dataset.Split
	// Params are the CKKS parameters; the zero value means DefaultParams().
	Params Params
	// Workers bounds the goroutines encrypting and decrypting (0:
	// GOMAXPROCS).
	Workers int
	// Logger receives progress (never data); nil discards.
	Logger *slog.Logger
	// Now is the clock of the model card; nil means time.Now.
	Now func() time.Time
	// Started, if set, is called once the setup (handshake, keys) is done
	// and the first tree begins; Progress, if set, after every tree. Both
	// run on Run's goroutine.
	Started  func()
	Progress func(Progress)
	// Resume, if set, continues a run from a checkpoint: training starts at
	// the tree after it. Its model id, version, hyper-parameters and rows
	// must be this run's.
	Resume *GuestCheckpoint
	// Checkpoint, if set, is called with the state after every tree,
	// before the hosts learn that the tree ended; an error ends the run.
	Checkpoint func(*GuestCheckpoint) error
}

// Progress reports one finished tree.
type Progress struct {
	Tree       int           // 0-based
	Trees      int           // the configured maximum
	Duration   time.Duration // this tree, evaluation included
	Validation lr.Metrics    // zero when there are no validation rows
	HostSplits int           // splits of this tree made by hosts
	Best       bool          // the trees so far are the best model yet
	Stop       bool          // this is the last tree
}

// Guest is the label holder's side of a run. It holds the CKKS secret key.
type Guest struct {
	cfg   GuestConfig
	table *dataset.Table
	hosts []HostPeer
	log   *slog.Logger
	// treeHook, if set (by tests), sees the run after the gradients of
	// every tree are computed, and levelHook every host's decrypted
	// histograms.
	treeHook  func(r *guestRun)
	levelHook func(h int, hists []partyHist)
}

// NewGuest returns the guest's side of a run on table (the guest's rows,
// aligned to the PSI result, with labels), talking to hosts.
func NewGuest(cfg GuestConfig, table *dataset.Table, hosts []HostPeer) (*Guest, error) {
	if table == nil || !table.HasLabels() || table.Len() == 0 {
		return nil, errors.New("secureboost: the guest needs a labelled table")
	}
	if len(hosts) == 0 || len(hosts) > MaxHosts {
		return nil, fmt.Errorf("secureboost: %d hosts, want 1..%d", len(hosts), MaxHosts)
	}
	for _, h := range hosts {
		if h.Transport == nil {
			return nil, errors.New("secureboost: a host has no transport")
		}
	}
	if cfg.Train == (Config{}) {
		cfg.Train = DefaultConfig()
	}
	if cfg.Split == (dataset.Split{}) {
		cfg.Split = dataset.DefaultSplit()
	}
	if err := cfg.Train.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Split.Validate(); err != nil {
		return nil, err
	}
	if cfg.Params.LogN == 0 {
		cfg.Params = DefaultParams()
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.Version == "" {
		cfg.Version = "1"
	}
	if cfg.ModelID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		cfg.ModelID = "sb-" + hex.EncodeToString(b[:])
	}
	if len(cfg.ModelID) > 128 || len(cfg.Version) > 64 {
		return nil, errors.New("secureboost: model id or version too long")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if c := cfg.Resume; c != nil {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: checkpoint: %v", ErrMismatch, err)
		}
		if c.ModelID != cfg.ModelID || c.Version != cfg.Version || c.Train != cfg.Train || c.Split != cfg.Split ||
			c.IDDigest != idDigest(table.IDs) || len(c.HostSplits) != len(hosts) {
			return nil, fmt.Errorf("%w: the checkpoint was taken for another model, hyper-parameters, hosts or rows", ErrMismatch)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Guest{cfg: cfg, table: table, hosts: hosts, log: log.With("component", "secureboost-guest")}, nil
}

// Run trains and returns the guest's half of the model. On error it sends
// an Abort to every host.
func (g *Guest) Run(ctx context.Context) (*GuestModel, error) {
	r := &guestRun{g: g, started: g.cfg.Now()}
	m, err := r.run(ctx)
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if !errors.Is(err, ErrAborted) {
			for _, h := range g.hosts {
				sendAbort(actx, h.Transport, err)
			}
		}
		return nil, fmt.Errorf("secureboost guest: %w", err)
	}
	return m, nil
}

type guestHost struct {
	features int
	lay      histLayout
	groups   []group
	splits   int   // split ids handed out so far
	first    []int // first split id of each tree
	inTree   []uint32
	noise    float64
	digest   string
}

type guestRun struct {
	g        *Guest
	started  time.Time
	session  string
	s        *suite
	sk       *rlwe.SecretKey
	encs     []*encrypter
	decs     [][]*decoder // per host, per worker
	parts    dataset.Parts
	binning  Binning
	b        *booster
	hosts    []guestHost
	maxNoise int
}

func (r *guestRun) run(ctx context.Context) (*GuestModel, error) {
	g := r.g
	cfg := g.cfg
	if err := cfg.Split.Validate(); err != nil {
		return nil, err
	}
	r.parts = cfg.Split.Apply(g.table)
	if r.parts.Train.Len() < 2 {
		return nil, errors.New("secureboost: the split leaves fewer than two training rows")
	}
	var err error
	if r.binning, err = FitBinning(r.parts.Train.X, cfg.Train.Bins); err != nil {
		return nil, err
	}
	if r.b, err = newBooster(cfg.Train, r.binning, r.parts.Train, r.parts.Validation); err != nil {
		return nil, err
	}
	if r.s, err = newSuite(cfg.Params); err != nil {
		return nil, err
	}
	if g.treeHook != nil {
		r.b.onGradients = func() { g.treeHook(r) }
	}
	var sess [16]byte
	if _, err := rand.Read(sess[:]); err != nil {
		return nil, err
	}
	r.session = hex.EncodeToString(sess[:])
	if err := r.handshake(ctx); err != nil {
		return nil, err
	}
	start := 0
	if cp := cfg.Resume; cp != nil {
		if err := r.restore(cp); err != nil {
			return nil, err
		}
		start = cp.Tree + 1
		if cp.Stop {
			start = cfg.Train.Trees
		}
	}
	g.log.Info("training", "model", cfg.ModelID, "hosts", len(g.hosts), "rows", r.parts.Train.Len(), "start_tree", start)
	if cfg.Started != nil {
		cfg.Started()
	}
	for t := start; t < cfg.Train.Trees; t++ {
		began := time.Now()
		st, err := r.b.growTree(ctx, t, r)
		if err != nil {
			return nil, err
		}
		for h := range r.hosts {
			r.hosts[h].inTree = nil
		}
		r.b.history = append(r.b.history, st)
		keep, halt := r.b.observe(t, st)
		halt = halt || t == cfg.Train.Trees-1
		var flags byte
		if keep {
			flags |= flagKeep
		}
		if halt {
			flags |= flagStop
		}
		if cfg.Checkpoint != nil {
			if err := cfg.Checkpoint(r.checkpoint(t, halt)); err != nil {
				return nil, fmt.Errorf("checkpoint after tree %d: %w", t, err)
			}
		}
		for _, peer := range g.hosts {
			if err := peer.Transport.Send(ctx, Message{Type: MsgTreeEnd, Tree: uint32(t), Payload: []byte{flags}}); err != nil {
				return nil, fmt.Errorf("send tree end to %s: %w", peer.Name, err)
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(Progress{Tree: t, Trees: cfg.Train.Trees, Duration: time.Since(began), Validation: st.Validation,
				HostSplits: st.HostSplits, Best: keep, Stop: halt})
		}
		if halt {
			break
		}
	}
	return r.finish(ctx)
}

func (r *guestRun) handshake(ctx context.Context) error {
	g := r.g
	cfg := g.cfg
	parts := r.parts
	digest := idDigest(g.table.IDs)
	for h, peer := range g.hosts {
		hl := hello{
			Protocol: Protocol, Session: r.session, ModelID: cfg.ModelID, Version: cfg.Version,
			HostIndex: h, Hosts: len(g.hosts), Params: cfg.Params, Train: cfg.Train,
			Split: cfg.Split, Rows: g.table.Len(), IDDigest: digest,
		}
		if cfg.Resume != nil {
			hl.StartTree = cfg.Resume.Tree + 1
		}
		b, err := jsonBytes(hl)
		if err != nil {
			return err
		}
		if err := peer.Transport.Send(ctx, Message{Type: MsgHello, Payload: b}); err != nil {
			return fmt.Errorf("send hello to %s: %w", peer.Name, err)
		}
	}
	r.hosts = make([]guestHost, len(g.hosts))
	nbins := make([][]int, len(g.hosts))
	totalBins := 0
	for h, peer := range g.hosts {
		m, err := recvExpect(ctx, peer.Transport, MsgHelloReply, 0, 0, 0)
		if err != nil {
			return err
		}
		var rep helloReply
		if err := jsonPayload(m.Payload, &rep); err != nil {
			return fmt.Errorf("hello reply of %s: %w", peer.Name, err)
		}
		switch {
		case rep.Protocol != Protocol || rep.Session != r.session:
			return fmt.Errorf("%w: %s answers for another protocol or session", ErrMismatch, peer.Name)
		case rep.IDDigest != digest:
			return fmt.Errorf("%w: %s holds different aligned identifiers", ErrMismatch, peer.Name)
		case rep.Train != parts.Train.Len() || rep.Validation != parts.Validation.Len() || rep.Test != parts.Test.Len():
			return fmt.Errorf("%w: %s split the rows differently", ErrMismatch, peer.Name)
		case rep.Features < 1 || rep.Features > dataset.MaxFeatures || len(rep.Bins) != rep.Features:
			return fmt.Errorf("%w: %s has %d features", ErrMalformed, peer.Name, rep.Features)
		case rep.NoiseBits < 0 || rep.NoiseBits > 60 || !(rep.NoiseSigma >= 0) || !finite(rep.NoiseSigma):
			return fmt.Errorf("%w: %s's histogram noise", ErrMalformed, peer.Name)
		}
		for _, nb := range rep.Bins {
			if nb < 1 || nb > cfg.Train.Bins {
				return fmt.Errorf("%w: %s has a feature with %d bins", ErrMalformed, peer.Name, nb)
			}
			totalBins += nb
		}
		want := 0
		if cp := cfg.Resume; cp != nil {
			want = cp.HostSplits[h]
		}
		if rep.Splits != want {
			return fmt.Errorf("%w: %s holds %d splits, this guest's checkpoint %d", ErrMismatch, peer.Name, rep.Splits, want)
		}
		nbins[h] = rep.Bins
		r.hosts[h] = guestHost{features: rep.Features, lay: newHistLayout(rep.Bins), noise: rep.NoiseSigma}
		r.maxNoise = max(r.maxNoise, rep.NoiseBits)
	}
	r.b.setHosts(nbins)
	stride := chooseStride(cfg.Params.LogN, parts.Train.Len(), len(g.hosts), totalBins)
	bud, err := cfg.Params.planBudget(cfg.Train.GradientBits, parts.Train.Len(), stride, r.maxNoise)
	if err != nil {
		return err
	}
	r.s.setBudget(bud)
	for h := range r.hosts {
		r.hosts[h].groups = groups(r.hosts[h].lay, r.s.perCt)
	}
	kg := rlwe.NewKeyGenerator(r.s.params)
	r.sk = kg.GenSecretKeyNew()
	pk := kg.GenPublicKeyNew(r.sk)
	for range g.cfg.Workers {
		e, err := r.s.newEncrypter(r.sk)
		if err != nil {
			return err
		}
		r.encs = append(r.encs, e)
	}
	r.decs = make([][]*decoder, len(g.hosts))
	for h := range r.decs {
		for range max(1, g.cfg.Workers/len(g.hosts)) {
			r.decs[h] = append(r.decs[h], r.s.newDecoder())
		}
	}
	sb, err := jsonBytes(setup{Budget: bud})
	if err != nil {
		return err
	}
	pkb := r.s.encodePublicKey(pk)
	for _, peer := range g.hosts {
		if err := peer.Transport.Send(ctx, Message{Type: MsgSetup, Payload: sb}); err != nil {
			return fmt.Errorf("send setup to %s: %w", peer.Name, err)
		}
		if err := peer.Transport.Send(ctx, Message{Type: MsgPublicKey, Payload: pkb}); err != nil {
			return fmt.Errorf("send public key to %s: %w", peer.Name, err)
		}
	}
	return nil
}

// hostCount implements remotes.
func (r *guestRun) hostCount() int { return len(r.hosts) }

// histograms implements remotes: it encrypts the computed nodes'
// gradients once, sends them to every host with the partitions that host
// lacks, and decrypts every host's histograms.
func (r *guestRun) histograms(ctx context.Context, lv *levelPlan) ([][]partyHist, error) {
	g := r.g
	s := r.s
	var all [][]int32
	for _, n := range lv.computed {
		all = append(all, chunks(n.samp, s.bud.Stride)...)
	}
	ctBytes := s.seededBytes()
	cts := make([]byte, len(all)*ctBytes)
	err := parallel(len(all), g.cfg.Workers, func(i, w int) error {
		sd, err := r.encs[w].encryptRows(all[i], r.b.gq, r.b.hq)
		if err != nil {
			return err
		}
		s.appendSeeded(cts[i*ctBytes:i*ctBytes:(i+1)*ctBytes], sd)
		return nil
	})
	if err != nil {
		return nil, err
	}
	t, d := uint32(lv.tree), uint16(lv.depth)
	partSize := s.p.PartSize
	parts := max(1, (len(all)+partSize-1)/partSize)
	out := make([][]partyHist, len(r.hosts))
	err = parallel(len(r.hosts), len(r.hosts), func(h, _ int) error {
		peer := g.hosts[h]
		for p := 0; p < parts; p++ {
			lo, hi := min(p*partSize, len(all)), min((p+1)*partSize, len(all))
			var pay []byte
			if p == 0 {
				var ids []int32
				var bms [][]byte
				size := 4
				for _, n := range lv.parents {
					if n.splitHost != h {
						ids = append(ids, n.id)
						bms = append(bms, n.leftBits)
						size += 4 + len(n.leftBits)
					}
				}
				pay = make([]byte, 0, size+4+(hi-lo)*ctBytes)
				pay = binary.BigEndian.AppendUint32(pay, uint32(len(ids)))
				for k, id := range ids {
					pay = binary.BigEndian.AppendUint32(pay, uint32(id))
					pay = append(pay, bms[k]...)
				}
			} else {
				pay = make([]byte, 0, 4+(hi-lo)*ctBytes)
			}
			pay = binary.BigEndian.AppendUint32(pay, uint32(hi-lo))
			pay = append(pay, cts[lo*ctBytes:hi*ctBytes]...)
			if err := peer.Transport.Send(ctx, Message{Type: MsgGradients, Tree: t, Level: d, Part: uint16(p), Payload: pay}); err != nil {
				return fmt.Errorf("send gradients to %s: %w", peer.Name, err)
			}
		}
		hists, err := r.receiveHistograms(ctx, h, lv)
		out[h] = hists
		if err == nil && g.levelHook != nil {
			g.levelHook(h, hists)
		}
		return err
	})
	return out, err
}

// receiveHistograms reads and decrypts host h's histograms of the
// computed nodes.
func (r *guestRun) receiveHistograms(ctx context.Context, h int, lv *levelPlan) ([]partyHist, error) {
	s := r.s
	gh := &r.hosts[h]
	type item struct{ node, group int }
	var items []item
	for k := range lv.computed {
		for gi := range gh.groups {
			items = append(items, item{k, gi})
		}
	}
	out := make([]partyHist, len(lv.computed))
	for k := range out {
		out[k] = newPartyHist(gh.lay.total)
	}
	partSize := s.p.PartSize
	parts := max(1, (len(items)+partSize-1)/partSize)
	for p := 0; p < parts; p++ {
		m, err := recvExpect(ctx, r.g.hosts[h].Transport, MsgHistograms, uint32(lv.tree), uint16(lv.depth), uint16(p))
		if err != nil {
			return nil, err
		}
		part := items[min(p*partSize, len(items)):min((p+1)*partSize, len(items))]
		rd := &reader{b: m.Payload}
		res := make([]hresult, len(part))
		for i, it := range part {
			grp := gh.groups[it.group]
			res[i] = s.readHResult(rd, grp.hi-grp.lo)
		}
		if err := rd.end(); err != nil {
			return nil, fmt.Errorf("histograms of %s: %w", r.g.hosts[h].Name, err)
		}
		err = parallel(len(part), len(r.decs[h]), func(i, w int) error {
			it := part[i]
			grp := gh.groups[it.group]
			dst := out[it.node]
			return r.decs[h][w].decrypt(r.sk, res[i], dst.G[grp.lo:grp.hi], dst.H[grp.lo:grp.hi])
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// splits implements remotes.
func (r *guestRun) splits(ctx context.Context, lv *levelPlan, decs []decision) error {
	g := r.g
	t, d := uint32(lv.tree), uint16(lv.depth)
	// Every host's orders and its nodes, decided before the exchanges run
	// concurrently (they write decs only afterwards).
	orders := make([][]splitOrder, len(r.hosts))
	mine := make([][]int, len(r.hosts))
	rows := make([][]int, len(r.hosts))
	for h := range r.hosts {
		orders[h] = make([]splitOrder, len(decs))
		for k := range decs {
			dc := &decs[k]
			switch {
			case !dc.split:
				orders[h][k].kind = kindLeaf
			case dc.host == h:
				orders[h][k] = splitOrder{kind: kindYours, feature: uint32(dc.feature), bin: uint32(dc.bin)}
				mine[h] = append(mine[h], k)
				rows[h] = append(rows[h], len(dc.node.rows))
			default:
				orders[h][k].kind = kindOther
			}
		}
	}
	ids := make([][]uint32, len(r.hosts))
	bms := make([][][]byte, len(r.hosts))
	err := parallel(len(r.hosts), len(r.hosts), func(h, _ int) error {
		peer := g.hosts[h]
		if err := peer.Transport.Send(ctx, Message{Type: MsgSplits, Tree: t, Level: d, Payload: appendSplitOrders(nil, orders[h])}); err != nil {
			return fmt.Errorf("send splits to %s: %w", peer.Name, err)
		}
		m, err := recvExpect(ctx, peer.Transport, MsgSplitReply, t, d, 0)
		if err != nil {
			return err
		}
		if ids[h], bms[h], err = decodeSplitReply(m.Payload, rows[h], r.hosts[h].splits); err != nil {
			return fmt.Errorf("%s: %w", peer.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for h := range r.hosts {
		for i, k := range mine[h] {
			decs[k].splitID, decs[k].left = ids[h][i], bms[h][i]
		}
		r.hosts[h].inTree = append(r.hosts[h].inTree, ids[h]...)
		r.hosts[h].splits += len(ids[h])
	}
	return nil
}

// treeDone implements remotes.
func (r *guestRun) treeDone(ctx context.Context, t int) ([]map[uint32][]byte, error) {
	out := make([]map[uint32][]byte, len(r.hosts))
	err := parallel(len(r.hosts), len(r.hosts), func(h, _ int) error {
		peer := r.g.hosts[h]
		gh := &r.hosts[h]
		gh.first = append(gh.first, gh.splits-len(gh.inTree))
		if err := peer.Transport.Send(ctx, Message{Type: MsgTreeDone, Tree: uint32(t)}); err != nil {
			return fmt.Errorf("send tree done to %s: %w", peer.Name, err)
		}
		m, err := recvExpect(ctx, peer.Transport, MsgRoutes, uint32(t), 0, 0)
		if err != nil {
			return err
		}
		rs, err := decodeRoutes(m.Payload, gh.inTree, r.b.nVal)
		if err != nil {
			return fmt.Errorf("routes of %s: %w", peer.Name, err)
		}
		out[h] = rs
		return nil
	})
	return out, err
}

// finish ends training: the hosts keep the kept trees' splits, send their
// test routes once and the digests of their halves.
func (r *guestRun) finish(ctx context.Context) (*GuestModel, error) {
	g := r.g
	kept := r.b.best
	routes := make([]map[uint32][]byte, len(r.hosts))
	test := r.parts.Test
	err := parallel(len(r.hosts), len(r.hosts), func(h, _ int) error {
		peer := g.hosts[h]
		gh := &r.hosts[h]
		keptSplits := gh.splits
		if kept < len(gh.first) {
			keptSplits = gh.first[kept]
		}
		fb, err := jsonBytes(finish{Trees: kept, Splits: keptSplits})
		if err != nil {
			return err
		}
		if err := peer.Transport.Send(ctx, Message{Type: MsgFinish, Payload: fb}); err != nil {
			return fmt.Errorf("send finish to %s: %w", peer.Name, err)
		}
		m, err := recvExpect(ctx, peer.Transport, MsgTestRoutes, 0, 0, 0)
		if err != nil {
			return err
		}
		ids := make([]uint32, keptSplits)
		for i := range ids {
			ids[i] = uint32(i)
		}
		if routes[h], err = decodeRoutes(m.Payload, ids, test.Len()); err != nil {
			return fmt.Errorf("test routes of %s: %w", peer.Name, err)
		}
		m, err = recvExpect(ctx, peer.Transport, MsgFinishReply, 0, 0, 0)
		if err != nil {
			return err
		}
		var rep finishReply
		if err := jsonPayload(m.Payload, &rep); err != nil {
			return err
		}
		if rep.Splits != keptSplits || len(rep.ModelDigest) != 64 {
			return fmt.Errorf("%w: %s finished a different model", ErrMismatch, peer.Name)
		}
		gh.splits = keptSplits
		gh.digest = rep.ModelDigest
		return nil
	})
	if err != nil {
		return nil, err
	}
	trees := r.b.trees[:kept]
	var testM lr.Metrics
	if test.Len() > 0 {
		u := make([]float64, test.Len())
		for i := range u {
			v := r.b.base
			for k := range trees {
				leaf, err := trees[k].Leaf(func(n *Node) (bool, error) {
					if n.Host == GuestSide {
						return test.X.At(i, n.Feature) <= n.Threshold, nil
					}
					bm, ok := routes[n.Host][n.SplitID]
					if !ok {
						return false, fmt.Errorf("%w: no test route of host %d split %d", ErrProtocol, n.Host, n.SplitID)
					}
					return bit(bm, i), nil
				})
				if err != nil {
					return nil, err
				}
				v += trees[k].Nodes[leaf].Value
			}
			u[i] = v
		}
		testM = lr.Evaluate(u, test.Labels)
	}
	g.log.Info("trained", "model", g.cfg.ModelID, "trees", kept)
	return r.model(testM), nil
}
