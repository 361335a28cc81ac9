package hetero

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"sync"
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
	// Train are the hyper-parameters (Sigmoid must be SigmoidTaylor); the
	// zero value means lr.DefaultConfig().
	Train lr.Config
	// Split is the train/validation/test split every party computes; the
	// zero value means dataset.DefaultSplit().
	Split dataset.Split
	// Params are the CKKS and fixed-point parameters; the zero value means
	// DefaultParams(number of hosts).
	Params Params
	// Logger receives progress (never data); nil discards.
	Logger *slog.Logger
	// Now is the clock for the model card; nil means time.Now.
	Now func() time.Time
	// Started, if set, is called once the setup (handshake, keys,
	// per-batch constants) is done and the first epoch begins; Progress,
	// if set, after every epoch. Both run on Run's goroutine.
	Started  func()
	Progress func(Progress)
	// Resume, if set, continues a run from a checkpoint: training starts
	// at the epoch after it (see GuestCheckpoint). Its model id, version,
	// hyper-parameters and rows must be this run's.
	Resume *GuestCheckpoint
	// Checkpoint, if set, is called with the state after every epoch,
	// before the hosts learn the epoch ended; an error ends the run.
	Checkpoint func(*GuestCheckpoint) error
}

// Progress reports one finished epoch.
type Progress struct {
	Epoch      int           // 0-based
	Epochs     int           // the configured maximum
	Duration   time.Duration // this epoch, batches and validation
	Validation lr.Metrics    // zero when there are no validation rows
	Best       bool          // these weights are the best so far
	Stop       bool          // this is the last epoch
}

// Guest is the label holder's side of a run. It holds the CKKS secret key.
type Guest struct {
	cfg   GuestConfig
	table *dataset.Table
	hosts []HostPeer
	log   *slog.Logger
	// stepHook, if set (by tests), sees the weights after every batch.
	stepHook func(w []float64, bias float64)
}

// NewGuest returns the guest's side of a run on table (the guest's rows,
// aligned to the PSI result, with labels), talking to hosts.
func NewGuest(cfg GuestConfig, table *dataset.Table, hosts []HostPeer) (*Guest, error) {
	if table == nil || !table.HasLabels() || table.Len() == 0 {
		return nil, errors.New("hetero: the guest needs a labelled table")
	}
	if len(hosts) == 0 || len(hosts) > MaxHosts {
		return nil, fmt.Errorf("hetero: %d hosts, want 1..%d", len(hosts), MaxHosts)
	}
	for _, h := range hosts {
		if h.Transport == nil {
			return nil, errors.New("hetero: a host has no transport")
		}
	}
	if cfg.Train == (lr.Config{}) {
		cfg.Train = lr.DefaultConfig()
	}
	if cfg.Split == (dataset.Split{}) {
		cfg.Split = dataset.DefaultSplit()
	}
	if err := cfg.Train.Validate(); err != nil {
		return nil, err
	}
	if cfg.Train.Sigmoid != lr.SigmoidTaylor {
		return nil, fmt.Errorf("hetero: the federated path evaluates the Taylor sigmoid only (got %s)", cfg.Train.Sigmoid)
	}
	if cfg.Params.LogN == 0 {
		cfg.Params = DefaultParams(len(hosts))
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
		cfg.ModelID = "lr-" + hex.EncodeToString(b[:])
	}
	if len(cfg.ModelID) > 128 || len(cfg.Version) > 64 {
		return nil, errors.New("hetero: model id or version too long")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if c := cfg.Resume; c != nil {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: checkpoint: %v", ErrMismatch, err)
		}
		if c.ModelID != cfg.ModelID || c.Version != cfg.Version || c.Train != cfg.Train || c.IDDigest != idDigest(table.IDs) {
			return nil, fmt.Errorf("%w: the checkpoint was taken for another model, hyper-parameters or rows", ErrMismatch)
		}
		if len(c.Weights) != len(table.Features) {
			return nil, fmt.Errorf("%w: the checkpoint has %d guest weights, the table %d features", ErrMismatch, len(c.Weights), len(table.Features))
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Guest{cfg: cfg, table: table, hosts: hosts, log: log.With("hetero", "guest")}, nil
}

// MaxHosts bounds the hosts of one run.
const MaxHosts = 16

// Run trains and returns the guest's half of the model. On error it sends
// an Abort to every host.
func (g *Guest) Run(ctx context.Context) (*GuestModel, error) {
	r := &guestRun{g: g, started: g.cfg.Now()}
	m, err := r.run(ctx)
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		for _, h := range g.hosts {
			sendAbort(actx, h.Transport, err)
		}
		return nil, fmt.Errorf("hetero guest: %w", err)
	}
	return m, nil
}

type guestHost struct {
	features int
	chunks   []int // features per chunk
	digest   string
}

type guestRun struct {
	g       *Guest
	started time.Time
	session string
	s       *suite
	sk      *rlwe.SecretKey
	enc     *rlwe.Encryptor
	prep    prepared
	plan    lr.Plan
	neg     float64
	pos     float64
	cInt    []uint64       // per training row
	xb      []batchColumns // per batch, with the intercept column
	cols    int            // guest features + intercept
	zChunks []int
	hosts   []guestHost
	w       []float64
	bias    float64
	stats   runStats
}

// runStats is the training record for the card.
type runStats struct {
	epochs    int
	bestEpoch int
	history   []lr.EpochStats
}

func (r *guestRun) run(ctx context.Context) (*GuestModel, error) {
	g := r.g
	cfg := g.cfg
	var err error
	if r.prep, err = prepare(g.table, cfg.Split, cfg.Params.FeatureBoundBits); err != nil {
		return nil, err
	}
	train := r.prep.parts.Train
	if r.neg, r.pos, err = lr.ClassWeights(cfg.Train.ClassWeights, train.Labels); err != nil {
		return nil, err
	}
	if r.plan, err = lr.NewPlan(train.Len(), cfg.Train.BatchSize, cfg.Train.Seed); err != nil {
		return nil, err
	}
	if r.s, err = newSuite(cfg.Params, r.plan.MaxBatch()); err != nil {
		return nil, err
	}
	bud, err := cfg.Params.planBudget(len(g.hosts), r.plan.MaxBatch(), r.s.lay.PerCt)
	if err != nil {
		return nil, err
	}
	r.s.setBudget(bud)
	var sess [16]byte
	if _, err := rand.Read(sess[:]); err != nil {
		return nil, err
	}
	r.session = hex.EncodeToString(sess[:])
	kg := rlwe.NewKeyGenerator(r.s.params)
	r.sk = kg.GenSecretKeyNew()
	pk := kg.GenPublicKeyNew(r.sk)
	r.enc = rlwe.NewEncryptor(r.s.params, r.sk)
	r.cols = train.X.Cols + 1
	r.zChunks = splitChunks(r.cols, r.s.lay.PerCt)
	if err := r.quantizeTrain(); err != nil {
		return nil, err
	}

	if err := r.handshake(ctx, bud, pk); err != nil {
		return nil, err
	}
	if err := r.sendConstants(ctx); err != nil {
		return nil, err
	}
	g.log.Info("training", "model", cfg.ModelID, "hosts", len(g.hosts), "rows", train.Len(), "batches", r.plan.Batches())
	return r.train(ctx)
}

func splitChunks(features, perCt int) []int {
	var out []int
	for f := features; f > 0; f -= perCt {
		out = append(out, min(f, perCt))
	}
	return out
}

// quantizeTrain fixes the guest's fixed-point training data: class weights
// and, per batch, the feature columns with the intercept column.
func (r *guestRun) quantizeTrain() error {
	p := r.s.p
	train := r.prep.parts.Train
	r.cInt = make([]uint64, train.Len())
	for i := range r.cInt {
		c := r.neg
		if train.Labels[i] == 1 {
			c = r.pos
		}
		ci, ok := quantize(c, p.WeightBits, p.WeightBits+5)
		if !ok || ci <= 0 {
			return fmt.Errorf("%w: class weight %v", ErrBound, c)
		}
		r.cInt[i] = uint64(ci)
	}
	batches := make([][]int, r.plan.Batches())
	for k := range batches {
		batches[k] = r.plan.Batch(k)
	}
	var ok bool
	r.xb, ok = quantizeBatches(train.X.Row, batches, train.X.Cols, p.FeatureBits, p.FeatureBits+p.FeatureBoundBits, true)
	if !ok {
		return fmt.Errorf("%w: feature outside 2^%d", ErrBound, p.FeatureBoundBits)
	}
	return nil
}

func (r *guestRun) handshake(ctx context.Context, bud budget, pk *rlwe.PublicKey) error {
	g := r.g
	cfg := g.cfg
	parts := r.prep.parts
	digest := idDigest(g.table.IDs)
	for h, peer := range g.hosts {
		hl := hello{
			Protocol: Protocol, Session: r.session, ModelID: cfg.ModelID, Version: cfg.Version,
			HostIndex: h, Hosts: len(g.hosts), Params: cfg.Params, Budget: bud, Train: cfg.Train,
			Split: cfg.Split, Rows: g.table.Len(), IDDigest: digest, GuestColumns: r.cols,
		}
		if cfg.Resume != nil {
			hl.StartEpoch = cfg.Resume.Epoch + 1
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
	keys := make([][]byte, len(g.hosts))
	for h, peer := range g.hosts {
		m, err := recvExpect(ctx, peer.Transport, MsgHelloReply, 0, 0)
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
		case rep.Features < 1 || rep.Features > dataset.MaxFeatures:
			return fmt.Errorf("%w: %s has %d features", ErrMalformed, peer.Name, rep.Features)
		case len(g.hosts) > 1 && len(rep.SeedKey) != 32:
			return fmt.Errorf("%w: %s sent no seed key", ErrMalformed, peer.Name)
		}
		r.hosts[h] = guestHost{features: rep.Features, chunks: splitChunks(rep.Features, r.s.lay.PerCt)}
		keys[h] = rep.SeedKey
	}
	pkb := r.s.encodePublicKey(pk)
	for _, peer := range g.hosts {
		if err := peer.Transport.Send(ctx, Message{Type: MsgPublicKey, Payload: pkb}); err != nil {
			return fmt.Errorf("send public key to %s: %w", peer.Name, err)
		}
	}
	if len(g.hosts) == 1 {
		return nil
	}
	// Relay the sealed mask seed from host 0 to the others.
	all := make([]byte, 0, 32*len(keys))
	for _, k := range keys {
		all = append(all, k...)
	}
	for _, peer := range g.hosts {
		if err := peer.Transport.Send(ctx, Message{Type: MsgHostKeys, Payload: all}); err != nil {
			return fmt.Errorf("send host keys to %s: %w", peer.Name, err)
		}
	}
	m, err := recvExpect(ctx, g.hosts[0].Transport, MsgSeedShare, 0, 0)
	if err != nil {
		return err
	}
	shares, err := decodeSeedShares(m.Payload, len(g.hosts))
	if err != nil {
		return err
	}
	for h := 1; h < len(g.hosts); h++ {
		if err := g.hosts[h].Transport.Send(ctx, Message{Type: MsgSeedShare, Batch: uint32(h), Payload: shares[h-1]}); err != nil {
			return fmt.Errorf("relay seed to %s: %w", g.hosts[h].Name, err)
		}
	}
	return nil
}

// decodeSeedShares splits host 0's payload into the sealed seeds for hosts
// 1..hosts−1, in order.
func decodeSeedShares(b []byte, hosts int) ([][]byte, error) {
	if len(b) != (hosts-1)*sealedSeedBytes {
		return nil, fmt.Errorf("%w: seed shares of %d bytes for %d hosts", ErrMalformed, len(b), hosts)
	}
	out := make([][]byte, hosts-1)
	for k := range out {
		out[k] = b[k*sealedSeedBytes : (k+1)*sealedSeedBytes]
	}
	return out, nil
}

// sendConstants encrypts, once per batch, the class weights (to every
// host) and the class-weighted guest columns (to host 0, for the guest's
// own gradient term).
func (r *guestRun) sendConstants(ctx context.Context) error {
	g := r.g
	p := r.s.p
	for k := 0; k < r.plan.Batches(); k++ {
		rows := r.plan.Batch(k)
		ptC := r.s.rowsPoly(len(rows), func(i, j int) uint64 { return r.cInt[rows[i]] % p.Q[j] })
		sdC, _, err := r.s.encryptSeeded(r.enc, ptC)
		if err != nil {
			return err
		}
		common := r.s.appendSeeded(nil, sdC)
		zpay := append([]byte(nil), common...)
		off := 0
		for _, f := range r.zChunks {
			pt := r.s.guestPoly(len(rows), f, func(i, jj, j int) uint64 {
				return mulmod(r.cInt[rows[i]]%p.Q[j], smod32(r.xb[k].col(off + jj)[i], p.Q[j]), p.Q[j])
			})
			sd, _, err := r.s.encryptSeeded(r.enc, pt)
			if err != nil {
				return err
			}
			zpay = r.s.appendSeeded(zpay, sd)
			off += f
		}
		for h, peer := range g.hosts {
			pay := common
			if h == 0 {
				pay = zpay
			}
			if err := peer.Transport.Send(ctx, Message{Type: MsgConstants, Batch: uint32(k), Payload: pay}); err != nil {
				return fmt.Errorf("send constants to %s: %w", peer.Name, err)
			}
		}
	}
	for _, peer := range g.hosts {
		if _, err := recvExpect(ctx, peer.Transport, MsgReady, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

func (r *guestRun) train(ctx context.Context) (*GuestModel, error) {
	g := r.g
	cfg := g.cfg.Train
	parts := r.prep.parts
	r.w = make([]float64, parts.Train.X.Cols)
	best := lr.Model{Weights: make([]float64, len(r.w))}
	stop := lr.NewEarlyStopping(cfg)
	useStop := stop.Enabled() && parts.Validation.Len() > 0
	r.stats.bestEpoch = -1
	last, start, stopped := 0, 0, false
	if cp := g.cfg.Resume; cp != nil {
		copy(r.w, cp.Weights)
		r.bias = cp.Bias
		copy(best.Weights, cp.BestWeights)
		best.Bias = cp.BestBias
		r.stats.bestEpoch = cp.BestEpoch
		r.stats.history = append([]lr.EpochStats(nil), cp.History...)
		stop.Restore(cp.Stopping)
		last, start, stopped = cp.Epoch, cp.Epoch+1, cp.Stop
	}
	if g.cfg.Started != nil {
		g.cfg.Started()
	}
	for e := start; e < cfg.Epochs && !stopped; e++ {
		epochStart := time.Now()
		eta := cfg.Schedule.Rate(cfg.LearningRate, e)
		for _, k := range r.plan.Order(e) {
			if err := r.step(ctx, e, k, eta); err != nil {
				return nil, fmt.Errorf("epoch %d batch %d: %w", e, k, err)
			}
			if g.stepHook != nil {
				g.stepHook(r.w, r.bias)
			}
		}
		u, err := r.evalScores(ctx, e, setValidation, parts.Validation)
		if err != nil {
			return nil, err
		}
		st := lr.EpochStats{Epoch: e, LearningRate: eta}
		if parts.Validation.Len() > 0 {
			st.Validation = lr.Evaluate(u, parts.Validation.Labels)
		}
		r.stats.history = append(r.stats.history, st)
		keep, halt := true, false
		if useStop {
			keep, halt = stop.Observe(e, st.Validation.LogLoss)
		}
		if keep {
			copy(best.Weights, r.w)
			best.Bias = r.bias
			r.stats.bestEpoch = e
		}
		last = e
		var flags byte
		if keep {
			flags |= flagKeep
		}
		if halt || e == cfg.Epochs-1 {
			flags |= flagStop
		}
		if g.cfg.Checkpoint != nil {
			cp := &GuestCheckpoint{ModelID: g.cfg.ModelID, Version: g.cfg.Version, IDDigest: idDigest(g.table.IDs), Train: cfg,
				Epoch: e, Stop: flags&flagStop != 0, Weights: append([]float64(nil), r.w...), Bias: r.bias,
				BestWeights: append([]float64(nil), best.Weights...), BestBias: best.Bias, BestEpoch: r.stats.bestEpoch,
				Stopping: stop.State(), History: append([]lr.EpochStats(nil), r.stats.history...)}
			if err := g.cfg.Checkpoint(cp); err != nil {
				return nil, fmt.Errorf("checkpoint after epoch %d: %w", e, err)
			}
		}
		for _, peer := range g.hosts {
			if err := peer.Transport.Send(ctx, Message{Type: MsgEpochEnd, Epoch: uint32(e), Payload: []byte{flags}}); err != nil {
				return nil, fmt.Errorf("send epoch end to %s: %w", peer.Name, err)
			}
		}
		g.log.Debug("epoch", "epoch", e, "val_auc", st.Validation.AUC, "val_loss", st.Validation.LogLoss)
		if g.cfg.Progress != nil {
			g.cfg.Progress(Progress{Epoch: e, Epochs: cfg.Epochs, Duration: time.Since(epochStart),
				Validation: st.Validation, Best: keep, Stop: flags&flagStop != 0})
		}
		if halt {
			break
		}
	}
	r.stats.epochs = last + 1
	r.w, r.bias = best.Weights, best.Bias
	testU, err := r.evalScores(ctx, last, setTest, parts.Test)
	if err != nil {
		return nil, err
	}
	var test lr.Metrics
	if parts.Test.Len() > 0 {
		test = lr.Evaluate(testU, parts.Test.Labels)
	}
	fb, err := jsonBytes(finish{BestEpoch: r.stats.bestEpoch, Epochs: r.stats.epochs})
	if err != nil {
		return nil, err
	}
	for _, peer := range g.hosts {
		if err := peer.Transport.Send(ctx, Message{Type: MsgFinish, Payload: fb}); err != nil {
			return nil, fmt.Errorf("send finish to %s: %w", peer.Name, err)
		}
	}
	for h, peer := range g.hosts {
		m, err := recvExpect(ctx, peer.Transport, MsgFinishReply, 0, 0)
		if err != nil {
			return nil, err
		}
		var rep finishReply
		if err := jsonPayload(m.Payload, &rep); err != nil {
			return nil, err
		}
		if rep.Features != r.hosts[h].features || len(rep.ModelDigest) != 64 {
			return nil, fmt.Errorf("%w: %s finished a different model", ErrMismatch, peer.Name)
		}
		r.hosts[h].digest = rep.ModelDigest
	}
	var val lr.Metrics
	if n := len(r.stats.history); n > 0 && r.stats.bestEpoch >= 0 {
		val = r.stats.history[r.stats.bestEpoch].Validation
	}
	return r.model(val, test), nil
}

// step runs one batch.
func (r *guestRun) step(ctx context.Context, e, k int, eta float64) error {
	g := r.g
	s := r.s
	p := s.p
	train := r.prep.parts.Train
	rows := r.plan.Batch(k)
	b := len(rows)
	ep, bt := uint32(e), uint32(k)

	// 1. Masked partial scores from every host.
	scores := make([][]i128, len(g.hosts))
	err := parallel(len(g.hosts), func(h int) error {
		m, err := recvExpect(ctx, g.hosts[h].Transport, MsgScores, ep, bt)
		if err != nil {
			return err
		}
		if scores[h], err = decodeScores(m.Payload, b); err != nil {
			return err
		}
		// A masked score is in [0, T) (one host), or u·2^σ + m with
		// |u·2^σ| < 2^(σ+B_u) and 0 ≤ m < 2^μ; anything else could
		// overflow the residual.
		lo := i128From(-(int64(1) << (p.ScoreBits + p.ScoreBoundBits)))
		if modularMasks(len(g.hosts)) {
			lo = i128{}
		}
		maxBits := p.scoreMaskBits(len(g.hosts))
		if !modularMasks(len(g.hosts)) {
			maxBits++
		}
		for _, v := range scores[h] {
			if v.sub(lo).isNeg() || v.bitLen() > maxBits {
				return fmt.Errorf("%w: masked score outside the mask range", ErrMalformed)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	// 2. Masked residual d'_i = c_i·(t_i + Σ_h s_h,i), t_i = (2 + u_A − 4y)·2^σ.
	lim := math.Exp2(float64(p.ScoreBoundBits))
	dp := make([]i128, b)
	for i, row := range rows {
		u := r.bias
		for j, v := range train.X.Row(row) {
			u += r.w[j] * v
		}
		if math.Abs(u) >= lim {
			return fmt.Errorf("%w: guest partial score beyond 2^%d (lower the learning rate)", ErrBound, p.ScoreBoundBits)
		}
		t, _ := quantize(2+u-4*train.Labels[row], p.ScoreBits, 62)
		v := i128From(t)
		for h := range scores {
			v = v.add(scores[h][i])
		}
		dp[i] = v.mulSmall(r.cInt[row])
	}
	pt := s.rowsPoly(b, func(i, j int) uint64 { return dp[i].mod(p.Q[j]) })
	sd, _, err := s.encryptSeeded(r.enc, pt)
	if err != nil {
		return err
	}
	pay := s.appendSeeded(make([]byte, 0, s.seededBytes()), sd)
	for _, peer := range g.hosts {
		if err := peer.Transport.Send(ctx, Message{Type: MsgResidual, Epoch: ep, Batch: bt, Payload: pay}); err != nil {
			return fmt.Errorf("send residual to %s: %w", peer.Name, err)
		}
	}

	// 3. Host 0's share of the guest's own gradient, computed while the
	// guest encrypted.
	m, err := recvExpect(ctx, g.hosts[0].Transport, MsgGuestTerm, ep, bt)
	if err != nil {
		return err
	}
	guestTerm, err := s.decodeResults(m.Payload, r.zChunks)
	if err != nil {
		return err
	}

	// 4. The hosts' masked gradients: decrypt, flood, return. Meanwhile,
	// the guest's own gradient.
	var own []float64
	var ownErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		own, ownErr = r.ownGradient(k, dp, guestTerm)
	}()
	err = parallel(len(g.hosts), func(h int) error {
		m, err := recvExpect(ctx, g.hosts[h].Transport, MsgGradient, ep, bt)
		if err != nil {
			return err
		}
		res, err := s.decodeResults(m.Payload, r.hosts[h].chunks)
		if err != nil {
			return err
		}
		chunks := r.hosts[h].chunks
		outs := make([][][]uint64, len(chunks))
		err = parallel(len(chunks), func(c int) error {
			dec := s.decryptAt(r.sk, res[c].C1, res[c].C0, s.resultPositions(chunks[c]))
			for k, d := range dec {
				fl, err := r.flood(d)
				if err != nil {
					return err
				}
				dec[k] = fl
			}
			outs[c] = dec
			return nil
		})
		if err != nil {
			return err
		}
		var pay []byte
		for _, o := range outs {
			pay = appendResidueRows(pay, o)
		}
		return g.hosts[h].Transport.Send(ctx, Message{Type: MsgDecrypted, Epoch: ep, Batch: bt, Payload: pay})
	})
	wg.Wait()
	if err != nil {
		return err
	}
	if ownErr != nil {
		return ownErr
	}

	// 5. Update the guest's weights.
	bf := float64(b)
	l2 := g.cfg.Train.L2
	for j := range r.w {
		r.w[j] -= eta * (own[j]/bf + l2*r.w[j])
	}
	r.bias -= eta * own[len(r.w)] / bf
	if math.IsNaN(r.bias) || math.IsInf(r.bias, 0) {
		return fmt.Errorf("%w: diverged", ErrBound)
	}
	return nil
}

// flood adds uniform noise of 2^FloodLog2 to a decrypted value (residues
// mod Q_out) before it goes back to a host.
func (r *guestRun) flood(res []uint64) ([]uint64, error) {
	v := r.s.crtOut.combine(res)
	f, err := randomBig(r.s.bud.FloodLog2)
	if err != nil {
		return nil, err
	}
	v.Add(v, f).Mod(v, r.s.crtOut.Q)
	out := make([]uint64, len(res))
	r.s.crtOut.residues(v, out)
	return out, nil
}

// ownGradient returns Σ_i x_ij·d_i for the guest's columns (features, then
// the intercept): Σ_i x_ij·d'_i computed in the clear minus the decrypted
// Σ_i (c_i·x_ij)·m_i from host 0.
func (r *guestRun) ownGradient(k int, dp []i128, guestTerm []result) ([]float64, error) {
	s := r.s
	p := s.p
	b := len(dp)
	dres := make([]uint64, len(p.Q)*b) // [prime·b + i]
	for i, v := range dp {
		for j, q := range p.Q {
			dres[j*b+i] = v.mod(q)
		}
	}
	out := make([]float64, 0, r.cols)
	scale := s.gradientScale()
	half := new(big.Int).Rsh(s.pDrop, 1)
	col := 0
	res := make([]uint64, len(p.Q))
	for c, f := range r.zChunks {
		dec := s.decryptAt(r.sk, guestTerm[c].C1, guestTerm[c].C0, s.resultPositions(f))
		for jj := 0; jj < f; jj++ {
			x := r.xb[k].col(col)
			for j, q := range p.Q {
				d := dres[j*b : (j+1)*b]
				var acc uint64
				for i, xv := range x {
					acc += mulmod(smod32(xv, q), d[i], q)
					if acc >= q {
						acc -= q
					}
				}
				res[j] = mulmod(acc, s.alphaR[j], q)
			}
			a := s.crtTop.combine(res)
			a.Add(a, half).Quo(a, s.pDrop) // round(A / P_drop)
			a.Sub(a, s.crtOut.combine(dec[jj])).Mod(a, s.crtOut.Q)
			out = append(out, toReal(s.crtOut.centered(a), scale))
			col++
		}
	}
	return out, nil
}

// evalScores collects the hosts' zero-sum-masked partial scores of an
// evaluation set and returns the full logits with the guest's weights.
func (r *guestRun) evalScores(ctx context.Context, e, set int, t *dataset.Table) ([]float64, error) {
	g := r.g
	n := t.Len()
	sum := make([]i128, n)
	var mu sync.Mutex
	err := parallel(len(g.hosts), func(h int) error {
		m, err := recvExpect(ctx, g.hosts[h].Transport, MsgEvalScores, uint32(e), uint32(set))
		if err != nil {
			return err
		}
		v, err := decodeScores(m.Payload, n)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range sum {
			sum[i] = sum[i].add(v[i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lim := float64(len(g.hosts)) * math.Exp2(float64(evalScoreBits+r.s.p.ScoreBits))
	u := make([]float64, n)
	for i := range u {
		if sum[i].bitLen() > 62 {
			return nil, fmt.Errorf("%w: host scores of an evaluation row out of range", ErrBound)
		}
		hv := float64(int64(sum[i].lo))
		if math.Abs(hv) > lim {
			return nil, fmt.Errorf("%w: host scores of an evaluation row out of range", ErrBound)
		}
		x := t.X.Row(i)
		v := r.bias
		for j, w := range r.w {
			v += w * x[j]
		}
		u[i] = v + math.Ldexp(hv, -r.s.p.ScoreBits)
	}
	return u, nil
}

// parallel runs f for 0..n−1 concurrently and returns the first error.
func parallel(n int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
