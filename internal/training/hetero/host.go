package hetero

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// HostConfig configures a host's side of a run.
type HostConfig struct {
	// Name is this host's name in logs.
	Name string
	// MaxEpochs refuses proposals with more epochs (0: lr.MaxEpochs).
	MaxEpochs int
	// Logger receives progress (never data); nil discards.
	Logger *slog.Logger
	// Now is the clock for the model; nil means time.Now.
	Now func() time.Time
	// Workers bounds the goroutines computing ciphertexts (0: GOMAXPROCS).
	Workers int
	// CacheBytes bounds the memory spent caching per-batch plaintexts of
	// the host's features (0: 512 MiB).
	CacheBytes int64
	// Resume, if set, continues a run from this host's checkpoint; the
	// guest's Hello must start at the epoch after it, for the same model,
	// hyper-parameters and rows (ErrMismatch otherwise).
	Resume *HostCheckpoint
	// Checkpoint, if set, is called with the host's state after every
	// epoch; an error ends the run.
	Checkpoint func(*HostCheckpoint) error
}

// Host is a feature provider's side of a run.
type Host struct {
	cfg   HostConfig
	table *dataset.Table
	t     Transport
	log   *slog.Logger
	// stepHook, if set (by tests), sees the weights after every batch.
	stepHook func(w []float64)
}

// NewHost returns a host's side of a run on table (the host's rows,
// aligned to the PSI result, no labels), talking to the guest over t.
func NewHost(cfg HostConfig, table *dataset.Table, t Transport) (*Host, error) {
	if table == nil || table.Len() == 0 {
		return nil, errors.New("hetero: the host needs a table")
	}
	if t == nil {
		return nil, errors.New("hetero: the host needs a transport")
	}
	if cfg.MaxEpochs <= 0 {
		cfg.MaxEpochs = lr.MaxEpochs
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 512 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Host{cfg: cfg, table: table, t: t, log: log.With("hetero", "host")}, nil
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
		return nil, fmt.Errorf("hetero host: %w", err)
	}
	return m, nil
}

type hostBatch struct {
	c  *rlwe.Ciphertext   // [[c]]
	z  []*rlwe.Ciphertext // [[c⊙X_A]] chunks (host 0)
	p1 []ring.Poly        // cached feature layouts, nil if not cached
}

type hostRun struct {
	h        *Host
	hl       hello
	s        *suite
	workers  chan *worker
	prep     prepared
	plan     lr.Plan
	key      maskKey
	xb       []batchColumns // per batch
	chunks   []int
	chunkOff []int
	batches  []hostBatch
	w, best  []float64
}

func (r *hostRun) run(ctx context.Context) (*HostModel, error) {
	if err := r.handshake(ctx); err != nil {
		return nil, err
	}
	if err := r.receiveConstants(ctx); err != nil {
		return nil, err
	}
	return r.train(ctx)
}

func (r *hostRun) handshake(ctx context.Context) error {
	h := r.h
	m, err := recvExpect(ctx, h.t, MsgHello, 0, 0)
	if err != nil {
		return err
	}
	if err := jsonPayload(m.Payload, &r.hl); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hl := r.hl
	switch {
	case hl.Protocol != Protocol:
		return fmt.Errorf("%w: protocol %.32q", ErrMismatch, hl.Protocol)
	case len(hl.Session) != 32 || len(hl.ModelID) == 0 || len(hl.ModelID) > 128 || len(hl.Version) == 0 || len(hl.Version) > 64:
		return fmt.Errorf("%w: session, model id or version", ErrMalformed)
	case hl.Hosts < 1 || hl.Hosts > MaxHosts || hl.HostIndex < 0 || hl.HostIndex >= hl.Hosts:
		return fmt.Errorf("%w: host %d of %d", ErrMalformed, hl.HostIndex, hl.Hosts)
	case hl.GuestColumns < 1 || hl.GuestColumns > dataset.MaxFeatures+1:
		return fmt.Errorf("%w: %d guest columns", ErrMalformed, hl.GuestColumns)
	}
	if err := hl.Train.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	if hl.Train.Sigmoid != lr.SigmoidTaylor {
		return fmt.Errorf("%w: sigmoid %s", ErrParams, hl.Train.Sigmoid)
	}
	if hl.Train.Epochs > h.cfg.MaxEpochs {
		return fmt.Errorf("%w: %d epochs, this host allows %d", ErrParams, hl.Train.Epochs, h.cfg.MaxEpochs)
	}
	if hl.Rows != h.table.Len() || hl.IDDigest != idDigest(h.table.IDs) {
		return fmt.Errorf("%w: the guest's aligned identifiers differ from this host's", ErrMismatch)
	}
	if err := r.checkResume(); err != nil {
		return err
	}
	if err := hl.Params.Validate(); err != nil {
		return err
	}
	if r.prep, err = prepare(h.table, hl.Split, hl.Params.FeatureBoundBits); err != nil {
		return err
	}
	train := r.prep.parts.Train
	if r.plan, err = lr.NewPlan(train.Len(), hl.Train.BatchSize, hl.Train.Seed); err != nil {
		return err
	}
	if r.s, err = newSuite(hl.Params, r.plan.MaxBatch()); err != nil {
		return err
	}
	if err := hl.Params.checkBudget(hl.Budget, hl.Hosts, r.plan.MaxBatch(), r.s.lay.PerCt); err != nil {
		return err
	}
	r.s.setBudget(hl.Budget)
	r.chunks = splitChunks(train.X.Cols, r.s.lay.PerCt)
	r.chunkOff = make([]int, len(r.chunks))
	for c := 1; c < len(r.chunks); c++ {
		r.chunkOff[c] = r.chunkOff[c-1] + r.chunks[c-1]
	}
	if err := r.quantizeTrain(); err != nil {
		return err
	}

	var seedKey *ecdh.PrivateKey
	rep := helloReply{
		Protocol: Protocol, Session: hl.Session, Features: train.X.Cols,
		Train: train.Len(), Validation: r.prep.parts.Validation.Len(), Test: r.prep.parts.Test.Len(),
		IDDigest: hl.IDDigest,
	}
	if hl.Hosts > 1 {
		if seedKey, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return err
		}
		rep.SeedKey = seedKey.PublicKey().Bytes()
	}
	b, err := jsonBytes(rep)
	if err != nil {
		return err
	}
	if err := h.t.Send(ctx, Message{Type: MsgHelloReply, Payload: b}); err != nil {
		return fmt.Errorf("send hello reply: %w", err)
	}

	m, err = recvExpect(ctx, h.t, MsgPublicKey, 0, 0)
	if err != nil {
		return err
	}
	pk, err := r.s.decodePublicKey(m.Payload)
	if err != nil {
		return err
	}
	r.workers = make(chan *worker, h.cfg.Workers)
	for range h.cfg.Workers {
		w, err := r.s.newWorker(pk)
		if err != nil {
			return err
		}
		r.workers <- w
	}

	r.key = maskKey{session: hl.Session}
	if hl.Hosts == 1 {
		_, err := rand.Read(r.key.seed[:])
		return err
	}
	m, err = recvExpect(ctx, h.t, MsgHostKeys, 0, 0)
	if err != nil {
		return err
	}
	if len(m.Payload) != 32*hl.Hosts {
		return fmt.Errorf("%w: %d bytes of host keys for %d hosts", ErrMalformed, len(m.Payload), hl.Hosts)
	}
	keys := make([][]byte, hl.Hosts)
	for k := range keys {
		keys[k] = m.Payload[32*k : 32*(k+1)]
	}
	if string(keys[hl.HostIndex]) != string(seedKey.PublicKey().Bytes()) {
		return fmt.Errorf("%w: the guest relayed another key for this host", ErrMismatch)
	}
	if hl.HostIndex == 0 {
		if _, err := rand.Read(r.key.seed[:]); err != nil {
			return err
		}
		var pay []byte
		for k := 1; k < hl.Hosts; k++ {
			sealed, err := sealSeed(seedKey, keys[k], hl.Session, k, r.key.seed)
			if err != nil {
				return err
			}
			pay = append(pay, sealed...)
		}
		return h.t.Send(ctx, Message{Type: MsgSeedShare, Payload: pay})
	}
	m, err = recvExpect(ctx, h.t, MsgSeedShare, 0, uint32(hl.HostIndex))
	if err != nil {
		return err
	}
	r.key.seed, err = openSeed(seedKey, keys[0], hl.Session, hl.HostIndex, m.Payload)
	return err
}

func (r *hostRun) quantizeTrain() error {
	p := r.s.p
	train := r.prep.parts.Train
	batches := make([][]int, r.plan.Batches())
	for k := range batches {
		batches[k] = r.plan.Batch(k)
	}
	var ok bool
	r.xb, ok = quantizeBatches(train.X.Row, batches, train.X.Cols, p.FeatureBits, p.FeatureBits+p.FeatureBoundBits, false)
	if !ok {
		return fmt.Errorf("%w: feature outside 2^%d", ErrBound, p.FeatureBoundBits)
	}
	return nil
}

func (r *hostRun) receiveConstants(ctx context.Context) error {
	s := r.s
	zCount := 0
	if r.hl.HostIndex == 0 {
		zCount = len(splitChunks(r.hl.GuestColumns, s.lay.PerCt))
	}
	// Cache the NTT-domain layouts of the host's features (they do not
	// change between epochs) for as many batches as CacheBytes allows.
	polyBytes := int64((s.top + 1) * s.n * 8)
	budget := r.h.cfg.CacheBytes
	r.batches = make([]hostBatch, r.plan.Batches())
	for k := range r.batches {
		m, err := recvExpect(ctx, r.h.t, MsgConstants, 0, uint32(k))
		if err != nil {
			return err
		}
		sds, err := s.decodeSeededList(m.Payload, 1+zCount)
		if err != nil {
			return fmt.Errorf("constants of batch %d: %w", k, err)
		}
		var hb hostBatch
		if hb.c, err = s.expand(sds[0]); err != nil {
			return err
		}
		for _, sd := range sds[1:] {
			ct, err := s.expand(sd)
			if err != nil {
				return err
			}
			hb.z = append(hb.z, ct)
		}
		if cost := int64(len(r.chunks)) * polyBytes; cost <= budget {
			budget -= cost
			w := <-r.workers
			off := 0
			for _, f := range r.chunks {
				p := s.ringQ.AtLevel(s.top).NewPoly()
				w.layout(p, r.xb[k], off, f, nil, false)
				hb.p1 = append(hb.p1, p)
				off += f
			}
			r.workers <- w
		}
		r.batches[k] = hb
	}
	return r.h.t.Send(ctx, Message{Type: MsgReady})
}

func (r *hostRun) train(ctx context.Context) (*HostModel, error) {
	h := r.h
	cfg := r.hl.Train
	parts := r.prep.parts
	r.w = make([]float64, parts.Train.X.Cols)
	r.best = make([]float64, len(r.w))
	last, start, stopped := -1, 0, false
	if cp := h.cfg.Resume; cp != nil {
		copy(r.w, cp.Weights)
		copy(r.best, cp.Best)
		last, start, stopped = cp.Epoch, cp.Epoch+1, cp.Stop
	}
	for e := start; e < cfg.Epochs && !stopped; e++ {
		eta := cfg.Schedule.Rate(cfg.LearningRate, e)
		for _, k := range r.plan.Order(e) {
			if err := r.step(ctx, e, k, eta); err != nil {
				return nil, fmt.Errorf("epoch %d batch %d: %w", e, k, err)
			}
			if h.stepHook != nil {
				h.stepHook(r.w)
			}
		}
		if err := r.sendEval(ctx, e, setValidation, parts.Validation); err != nil {
			return nil, err
		}
		m, err := recvExpect(ctx, h.t, MsgEpochEnd, uint32(e), 0)
		if err != nil {
			return nil, err
		}
		if len(m.Payload) != epochEndBytes || m.Payload[0]&^(flagKeep|flagStop) != 0 {
			return nil, fmt.Errorf("%w: epoch end flags", ErrMalformed)
		}
		if m.Payload[0]&flagKeep != 0 {
			copy(r.best, r.w)
		}
		last = e
		if h.cfg.Checkpoint != nil {
			cp := &HostCheckpoint{ModelID: r.hl.ModelID, Version: r.hl.Version, IDDigest: r.hl.IDDigest, Train: cfg,
				Epoch: e, Stop: m.Payload[0]&flagStop != 0, Weights: append([]float64(nil), r.w...), Best: append([]float64(nil), r.best...)}
			if err := h.cfg.Checkpoint(cp); err != nil {
				return nil, fmt.Errorf("checkpoint after epoch %d: %w", e, err)
			}
		}
		if m.Payload[0]&flagStop != 0 {
			break
		}
	}
	r.w = r.best
	if err := r.sendEval(ctx, last, setTest, parts.Test); err != nil {
		return nil, err
	}
	m, err := recvExpect(ctx, h.t, MsgFinish, 0, 0)
	if err != nil {
		return nil, err
	}
	var fin finish
	if err := jsonPayload(m.Payload, &fin); err != nil {
		return nil, err
	}
	if fin.Epochs != last+1 || fin.BestEpoch < 0 || fin.BestEpoch > last {
		return nil, fmt.Errorf("%w: finish says %d epochs, best %d; this host ran %d", ErrProtocol, fin.Epochs, fin.BestEpoch, last+1)
	}
	model := r.model(fin)
	digest, err := model.Digest()
	if err != nil {
		return nil, err
	}
	b, err := jsonBytes(finishReply{ModelDigest: digest, Features: len(model.Features)})
	if err != nil {
		return nil, err
	}
	if err := h.t.Send(ctx, Message{Type: MsgFinishReply, Payload: b}); err != nil {
		return nil, fmt.Errorf("send finish reply: %w", err)
	}
	h.log.Info("trained", "model", model.ModelID, "epochs", fin.Epochs)
	return model, nil
}

// step runs one batch.
func (r *hostRun) step(ctx context.Context, e, k int, eta float64) error {
	h := r.h
	s := r.s
	p := s.p
	hl := r.hl
	L := len(p.Q)
	train := r.prep.parts.Train
	rows := r.plan.Batch(k)
	b := len(rows)
	ep, bt := uint32(e), uint32(k)
	hb := r.batches[k]

	// 1. Masked partial scores s = u + m (one host: modulo T), and the
	// total offset the guest's residual will carry: Σ_h m_h (one host:
	// s − u).
	mu := p.scoreMaskBits(hl.Hosts)
	mine, err := r.key.scoreMasks(e, k, hl.HostIndex, b, mu)
	if err != nil {
		return err
	}
	scores := make([]i128, b)
	total := mine
	if modularMasks(hl.Hosts) {
		total = make([]i128, b)
	}
	tmod := i128From(int64(1) << mu)
	for i, row := range rows {
		u := 0.0
		for j, v := range train.X.Row(row) {
			u += r.w[j] * v
		}
		ui, ok := quantize(u, p.ScoreBits, p.ScoreBits+p.ScoreBoundBits)
		if !ok {
			return fmt.Errorf("%w: partial score beyond 2^%d (lower the learning rate)", ErrBound, p.ScoreBoundBits)
		}
		v := i128From(ui).add(mine[i])
		if modularMasks(hl.Hosts) {
			switch {
			case v.isNeg():
				v = v.add(tmod)
			case !v.sub(tmod).isNeg():
				v = v.sub(tmod)
			}
			total[i] = v.sub(i128From(ui))
		}
		scores[i] = v
	}
	if err := h.t.Send(ctx, Message{Type: MsgScores, Epoch: ep, Batch: bt, Payload: appendScores(make([]byte, 0, 16*b), scores)}); err != nil {
		return fmt.Errorf("send scores: %w", err)
	}
	if hl.Hosts > 1 {
		if total, err = r.key.totalMasks(e, k, hl.Hosts, b, mu); err != nil {
			return err
		}
	}
	mres := make([]uint64, b*L) // [prime·b + i], Montgomery form
	for j, q := range p.Q {
		brc := s.ringQ.SubRings[j].BRedConstant
		for i, m := range total {
			mres[j*b+i] = ring.MForm(m.mod(q), q, brc)
		}
	}

	// 2. Host 0: the guest's term Σ_i (c_i·x_A,ij)·M_i, re-randomised.
	if hl.HostIndex == 0 {
		zch := splitChunks(hl.GuestColumns, s.lay.PerCt)
		pay, offs := r.payload(zch)
		err := r.runChunks(len(zch), func(c int, w *worker) error {
			w.layoutRows(w.p2, mres, b)
			w.product([]*rlwe.Ciphertext{hb.z[c]}, []ring.Poly{w.p2})
			w.finish(s.resultPositions(zch[c]), nil, pay[offs[c]:offs[c]])
			return nil
		})
		if err != nil {
			return err
		}
		if err := h.t.Send(ctx, Message{Type: MsgGuestTerm, Epoch: ep, Batch: bt, Payload: pay}); err != nil {
			return fmt.Errorf("send guest term: %w", err)
		}
	}

	// 3. The encrypted residual; the masked gradient X_hᵀ·d + R.
	m, err := recvExpect(ctx, h.t, MsgResidual, ep, bt)
	if err != nil {
		return err
	}
	sds, err := s.decodeSeededList(m.Payload, 1)
	if err != nil {
		return err
	}
	ctD, err := s.expand(sds[0])
	if err != nil {
		return err
	}
	masks := make([][][]uint64, len(r.chunks))
	pay, offs := r.payload(r.chunks)
	err = r.runChunks(len(r.chunks), func(c int, w *worker) error {
		f, off := r.chunks[c], r.chunkOff[c]
		p1 := w.p1
		if hb.p1 != nil {
			p1 = hb.p1[c]
		} else {
			w.layout(p1, r.xb[k], off, f, nil, false)
		}
		w.layout(w.p2, r.xb[k], off, f, mres, true)
		w.product([]*rlwe.Ciphertext{ctD, hb.c}, []ring.Poly{p1, w.p2})
		masks[c] = make([][]uint64, f)
		for jj := range masks[c] {
			masks[c][jj] = make([]uint64, s.out+1)
			if err := s.uniformResidues(masks[c][jj]); err != nil {
				return err
			}
		}
		w.finish(s.resultPositions(f), masks[c], pay[offs[c]:offs[c]])
		return nil
	})
	if err != nil {
		return err
	}
	if err := h.t.Send(ctx, Message{Type: MsgGradient, Epoch: ep, Batch: bt, Payload: pay}); err != nil {
		return fmt.Errorf("send gradient: %w", err)
	}

	// 4. The guest's flooded decryption: remove R, update.
	m, err = recvExpect(ctx, h.t, MsgDecrypted, ep, bt)
	if err != nil {
		return err
	}
	dec, err := s.decodeResidueRows(m.Payload, len(r.w))
	if err != nil {
		return err
	}
	scale := s.gradientScale()
	bf := float64(b)
	l2 := hl.Train.L2
	idx := 0
	res := make([]uint64, s.out+1)
	for c, f := range r.chunks {
		for jj := 0; jj < f; jj++ {
			for j, q := range p.Q[:s.out+1] {
				res[j] = (dec[idx][j] + q - masks[c][jj][j]) % q
			}
			g := toReal(s.crtOut.centered(s.crtOut.combine(res)), scale)
			r.w[idx] -= eta * (g/bf + l2*r.w[idx])
			idx++
		}
	}
	return nil
}

// runChunks runs f for chunks 0..n−1 on the worker pool.
func (r *hostRun) runChunks(n int, f func(c int, w *worker) error) error {
	return parallel(n, func(c int) error {
		w := <-r.workers
		defer func() { r.workers <- w }()
		return f(c, w)
	})
}

// payload allocates a message payload for one result ciphertext per chunk
// and returns the offset of each.
func (r *hostRun) payload(chunks []int) ([]byte, []int) {
	offs := make([]int, len(chunks))
	n := 0
	for c, f := range chunks {
		offs[c] = n
		n += r.s.resultBytes(f)
	}
	return make([]byte, n), offs
}

// evalScoreBits bounds evaluation scores: they enter no ciphertext, so
// their bound is only a sanity check (|u| < 2^30).
const evalScoreBits = 30

// sendEval sends the partial scores of an evaluation set, masked so that
// only their sum over hosts is visible to the guest.
func (r *hostRun) sendEval(ctx context.Context, e, set int, t *dataset.Table) error {
	p := r.s.p
	n := t.Len()
	z, err := r.key.zeroSumMasks(e, set, r.hl.HostIndex, r.hl.Hosts, n)
	if err != nil {
		return err
	}
	out := make([]i128, n)
	for i := range out {
		u := 0.0
		for j, v := range t.X.Row(i) {
			u += r.w[j] * v
		}
		ui, ok := quantize(u, p.ScoreBits, p.ScoreBits+evalScoreBits)
		if !ok {
			return fmt.Errorf("%w: evaluation score beyond 2^%d", ErrBound, evalScoreBits)
		}
		out[i] = i128From(ui).add(z[i])
	}
	return r.h.t.Send(ctx, Message{Type: MsgEvalScores, Epoch: uint32(e), Batch: uint32(set), Payload: appendScores(make([]byte, 0, 16*n), out)})
}

// checkResume checks the guest's start epoch against this host's
// checkpoint.
func (r *hostRun) checkResume() error {
	hl, cp := r.hl, r.h.cfg.Resume
	want := 0
	if cp != nil {
		want = cp.Epoch + 1
	}
	if hl.StartEpoch != want {
		if cp == nil {
			return fmt.Errorf("%w: the guest resumes at epoch %d, this host has no checkpoint to resume from", ErrMismatch, hl.StartEpoch)
		}
		return fmt.Errorf("%w: the guest resumes at epoch %d, this host's checkpoint is after epoch %d", ErrMismatch, hl.StartEpoch, cp.Epoch)
	}
	if cp == nil {
		return nil
	}
	if err := cp.check(); err != nil {
		return fmt.Errorf("%w: checkpoint: %v", ErrMismatch, err)
	}
	if cp.ModelID != hl.ModelID || cp.Version != hl.Version || cp.IDDigest != hl.IDDigest || cp.Train != hl.Train {
		return fmt.Errorf("%w: this host's checkpoint was taken for another model, hyper-parameters or rows", ErrMismatch)
	}
	if len(cp.Weights) != r.h.table.X.Cols {
		return fmt.Errorf("%w: the checkpoint has %d weights, the table %d features", ErrMismatch, len(cp.Weights), r.h.table.X.Cols)
	}
	return nil
}
