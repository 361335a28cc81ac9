package secureboost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Model formats.
const (
	GuestFormat = "fedrisk-hetero-secureboost-guest/1"
	HostFormat  = "fedrisk-hetero-secureboost-host/1"
)

// MaxModelBytes bounds a model document accepted by ParseGuestModel and
// ParseHostModel.
const MaxModelBytes = 32 << 20

// GuestModel is the guest's half of a model: the trees' structure and
// leaf weights, its own splits (feature and threshold) and, for each host
// split, only (host, split id). A score is
// Logistic(GuestModel.Logit(x_guest, routing bits of every host)).
type GuestModel struct {
	Format   string    `json:"format"`
	ModelID  string    `json:"model_id"`
	Version  string    `json:"version"`
	Features []string  `json:"features"`
	Base     float64   `json:"base"`
	Trees    []Tree    `json:"trees"`
	Hosts    []HostRef `json:"hosts"`
	Metrics  Metrics   `json:"metrics"`
	Card     Card      `json:"card"`
}

// HostRef names a host's half from the guest's side.
type HostRef struct {
	Name     string `json:"name"`
	Index    int    `json:"index"`
	Features int    `json:"features"`
	// Splits is the number of the host's splits in the model: its routing
	// answer has that many bits.
	Splits int `json:"splits"`
	// ModelDigest is the SHA-256 of the host's exported half, as the host
	// reported it.
	ModelDigest string `json:"model_digest"`
}

// HostModel is a host's half of a model: its splits by id (feature and
// threshold). Nothing else about the model is the host's.
type HostModel struct {
	Format    string      `json:"format"`
	ModelID   string      `json:"model_id"`
	Version   string      `json:"version"`
	HostIndex int         `json:"host_index"`
	Features  []string    `json:"features"`
	Splits    []HostSplit `json:"splits"`
	Trees     int         `json:"trees"`
	TrainedAt time.Time   `json:"trained_at"`
	// HistogramNoise is the standard deviation (gradient units) of the
	// noise this host added to every released bin sum (0: none).
	HistogramNoise float64 `json:"histogram_noise"`
}

// HostSplit is one split of a host: x[Feature] ≤ Threshold goes left.
type HostSplit struct {
	Feature   int     `json:"feature"`
	Threshold float64 `json:"threshold"`
	Tree      int     `json:"tree"`
	Node      int     `json:"node"`
}

// Metrics are the guest's evaluation of the model.
type Metrics struct {
	// Validation is the validation set with the kept trees.
	Validation lr.Metrics `json:"validation"`
	// Test is the held-out test set (scored once, after training).
	Test    lr.Metrics  `json:"test"`
	History []TreeStats `json:"history"`
	// Trees is the number of trees grown, Kept those in the model.
	Trees int `json:"trees"`
	Kept  int `json:"kept"`
}

// Card describes how the model was made.
type Card struct {
	Data            CardData       `json:"data"`
	Hyperparameters Config         `json:"hyperparameters"`
	ClassWeights    [2]float64     `json:"class_weights"` // negative, positive
	Importance      CardImportance `json:"importance"`
	Privacy         CardPrivacy    `json:"privacy"`
	StartedAt       time.Time      `json:"started_at"`
	Duration        time.Duration  `json:"duration_ns"`
	DurationText    string         `json:"duration"`
}

// CardData describes the training data.
type CardData struct {
	Split          dataset.Split `json:"split"`
	TrainRows      int           `json:"train_rows"`
	ValidationRows int           `json:"validation_rows"`
	TestRows       int           `json:"test_rows"`
	PositiveRate   float64       `json:"positive_rate"` // training rows
	GuestFeatures  int           `json:"guest_features"`
	HostFeatures   []int         `json:"host_features"`
}

// CardImportance is the feature importance over the kept trees: the
// guest's features by name, each host as one aggregate of its features.
type CardImportance struct {
	Guest []Importance `json:"guest"`
	Hosts []Importance `json:"hosts"`
}

// CardPrivacy records the privacy parameters of the run.
type CardPrivacy struct {
	Scheme             string    `json:"scheme"`
	LogN               int       `json:"log_n"`
	LogQ               float64   `json:"log_q"`
	Primes             int       `json:"primes"`
	SecurityBits       int       `json:"security_bits"`
	GradientBits       int       `json:"gradient_bits"`
	Stride             int       `json:"stride"`
	Alpha              int       `json:"alpha"`
	Shift              int       `json:"shift"`
	FloodBits          int       `json:"flood_bits"`
	FloodLog2          int       `json:"flood_log2"`
	HistogramNoise     []float64 `json:"histogram_noise"` // per host, gradient units
	FirstTreeGuestOnly bool      `json:"first_tree_guest_only"`
	Disclosures        []string  `json:"disclosures"`
}

// Logit returns the model's log-odds for the guest's raw features x and
// each host's routing bits (HostModel.Route of the same subject).
func (m *GuestModel) Logit(x []float64, routes [][]byte) (float64, error) {
	e, err := m.Explain(x, routes)
	if err != nil {
		return 0, err
	}
	return e.Logit, nil
}

// Explanation splits a score along its decision paths (Saabas): each
// split on the path is credited with the change of node value it causes;
// Bias plus the credits is the logit.
type Explanation struct {
	Logit float64 `json:"logit"`
	// Bias is the base score plus every tree's root value.
	Bias float64 `json:"bias"`
	// Guest credits the guest's features, by index of Features.
	Guest []float64 `json:"guest"`
	// Hosts credits each host as a whole (its features are not named).
	Hosts []float64 `json:"hosts"`
}

// Explain scores like Logit and attributes the score to the guest's
// features and to each host.
func (m *GuestModel) Explain(x []float64, routes [][]byte) (Explanation, error) {
	if len(x) != len(m.Features) {
		return Explanation{}, fmt.Errorf("secureboost: %d guest features, the model has %d", len(x), len(m.Features))
	}
	if len(routes) != len(m.Hosts) {
		return Explanation{}, fmt.Errorf("secureboost: routes of %d hosts, the model has %d", len(routes), len(m.Hosts))
	}
	for h, r := range routes {
		if err := checkBitmap(r, m.Hosts[h].Splits); err != nil {
			return Explanation{}, fmt.Errorf("secureboost: routes of host %d: %w", h, err)
		}
	}
	e := Explanation{Logit: m.Base, Bias: m.Base, Guest: make([]float64, len(m.Features)), Hosts: make([]float64, len(m.Hosts))}
	for k := range m.Trees {
		t := &m.Trees[k]
		i := 0
		e.Bias += t.Nodes[0].Value
		for d := 0; !t.Nodes[i].Leaf; d++ {
			n := &t.Nodes[i]
			if d >= MaxDepth {
				return Explanation{}, fmt.Errorf("secureboost: malformed tree %d", k)
			}
			var left bool
			if n.Host == GuestSide {
				left = x[n.Feature] <= n.Threshold
			} else {
				left = bit(routes[n.Host], int(n.SplitID))
			}
			next := int(n.Right)
			if left {
				next = int(n.Left)
			}
			delta := t.Nodes[next].Value - n.Value
			if n.Host == GuestSide {
				e.Guest[n.Feature] += delta
			} else {
				e.Hosts[n.Host] += delta
			}
			i = next
		}
		e.Logit += t.Nodes[i].Value
	}
	return e, nil
}

// checkBitmap checks that b holds exactly n bits.
func checkBitmap(b []byte, n int) error {
	if len(b) != (n+7)/8 {
		return fmt.Errorf("%d bytes of routing bits, want %d", len(b), (n+7)/8)
	}
	if n%8 != 0 && b[len(b)-1]>>(n%8) != 0 {
		return fmt.Errorf("bits set past split %d", n-1)
	}
	return nil
}

// Route returns the host's routing bits for a subject with raw features
// x: bit k (LSB first) is 1 when split k sends x left. This is all a host
// releases per score (see the package doc on how it is charged to a
// privacy budget).
func (m *HostModel) Route(x []float64) ([]byte, error) {
	if len(x) != len(m.Features) {
		return nil, fmt.Errorf("secureboost: %d features, the host's half has %d", len(x), len(m.Features))
	}
	out := make([]byte, (len(m.Splits)+7)/8)
	for k, s := range m.Splits {
		if x[s.Feature] <= s.Threshold {
			out[k/8] |= 1 << (k % 8)
		}
	}
	return out, nil
}

// Importance returns the number of the host's splits per feature (the
// host never learns the gains).
func (m *HostModel) Importance() []Importance {
	out := make([]Importance, len(m.Features))
	for j, f := range m.Features {
		out[j].Name = f
	}
	for _, s := range m.Splits {
		out[s.Feature].Splits++
	}
	return out
}

// Export returns the JSON document of the guest's half.
func (m *GuestModel) Export() ([]byte, error) { return json.MarshalIndent(m, "", "  ") }

// Export returns the JSON document of the host's half.
func (m *HostModel) Export() ([]byte, error) { return json.MarshalIndent(m, "", "  ") }

// Digest returns the hex SHA-256 of the exported host half.
func (m *HostModel) Digest() (string, error) {
	b, err := m.Export()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// ParseGuestModel reads and checks an exported guest half.
func ParseGuestModel(r io.Reader) (*GuestModel, error) {
	var m GuestModel
	if err := parseModel(r, &m); err != nil {
		return nil, err
	}
	if m.Format != GuestFormat {
		return nil, fmt.Errorf("%w: format %.40q", ErrMalformed, m.Format)
	}
	if err := checkIDs(m.ModelID, m.Version); err != nil {
		return nil, err
	}
	if len(m.Features) == 0 || len(m.Features) > dataset.MaxFeatures || len(m.Hosts) > MaxHosts || len(m.Trees) > MaxTrees || !finite(m.Base) {
		return nil, fmt.Errorf("%w: %d features, %d hosts, %d trees", ErrMalformed, len(m.Features), len(m.Hosts), len(m.Trees))
	}
	splits := make([]int, len(m.Hosts))
	for h, ref := range m.Hosts {
		if ref.Index != h || ref.Splits < 0 || ref.Splits > MaxTrees<<MaxDepth {
			return nil, fmt.Errorf("%w: host %d", ErrMalformed, h)
		}
		splits[h] = ref.Splits
	}
	for k := range m.Trees {
		if err := m.Trees[k].check(len(m.Hosts), len(m.Features), splits); err != nil {
			return nil, fmt.Errorf("%w: tree %d: %v", ErrMalformed, k, err)
		}
	}
	return &m, nil
}

// ParseHostModel reads and checks an exported host half.
func ParseHostModel(r io.Reader) (*HostModel, error) {
	var m HostModel
	if err := parseModel(r, &m); err != nil {
		return nil, err
	}
	if m.Format != HostFormat {
		return nil, fmt.Errorf("%w: format %.40q", ErrMalformed, m.Format)
	}
	if err := checkIDs(m.ModelID, m.Version); err != nil {
		return nil, err
	}
	if len(m.Features) == 0 || len(m.Features) > dataset.MaxFeatures || len(m.Splits) > MaxTrees<<MaxDepth ||
		m.Trees < 0 || m.Trees > MaxTrees || m.HostIndex < 0 || m.HostIndex >= MaxHosts ||
		!(m.HistogramNoise >= 0) || !finite(m.HistogramNoise) {
		return nil, fmt.Errorf("%w: host half shape", ErrMalformed)
	}
	for k, s := range m.Splits {
		if s.Feature < 0 || s.Feature >= len(m.Features) || !finite(s.Threshold) || s.Tree < 0 || s.Tree >= m.Trees ||
			s.Node < 0 || s.Node >= 1<<(MaxDepth+1) {
			return nil, fmt.Errorf("%w: split %d", ErrMalformed, k)
		}
	}
	return &m, nil
}

func checkIDs(id, version string) error {
	if id == "" || len(id) > 128 || version == "" || len(version) > 64 {
		return fmt.Errorf("%w: model id or version", ErrMalformed)
	}
	return nil
}

func parseModel(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxModelBytes+1))
	if err != nil {
		return err
	}
	if len(b) > MaxModelBytes {
		return fmt.Errorf("%w: model over %d bytes", ErrOversized, MaxModelBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the model", ErrMalformed)
	}
	return nil
}

// disclosures lists what each party learns, for the card.
func disclosures(cfg Config, hosts int) []string {
	out := []string{
		"hosts see only CKKS ciphertexts of the guest's gradients and hessians (under the guest's key), never a label, gradient or guest feature",
		"hosts learn the instance space (the training rows) of every node they build histograms for or split, and which of those nodes are split by them or by another party; the row subsample of each tree is public (seeded)",
		"the guest learns, for every node, each host feature's per-bin sums of gradients and hessians (exact up to the host's optional noise), hence the order of the host's candidate splits by gain; the host's thresholds stay with the host",
		"the guest learns the partition of each node's training rows at host splits, and each host's routing bits at its splits for the validation rows (every tree) and the test rows (once) — what online scoring releases",
	}
	if cfg.FirstTreeGuestOnly {
		out = append(out, "the first tree is grown on the guest's features only: hosts learn nothing about it")
	}
	if hosts > 1 {
		out = append(out, "a host learns the partitions of the nodes above its histograms, including those made by the guest or other hosts")
	}
	return out
}

// model assembles the guest's half.
func (r *guestRun) model(test lr.Metrics) *GuestModel {
	g := r.g
	cfg := g.cfg
	parts := r.parts
	kept := r.b.best
	var pos float64
	for _, y := range parts.Train.Labels {
		pos += y
	}
	refs := make([]HostRef, len(r.hosts))
	hostFeat := make([]int, len(r.hosts))
	noise := make([]float64, len(r.hosts))
	for h, gh := range r.hosts {
		refs[h] = HostRef{Name: g.hosts[h].Name, Index: h, Features: gh.features, Splits: gh.splits, ModelDigest: gh.digest}
		hostFeat[h] = gh.features
		noise[h] = gh.noise
	}
	// Importance over the kept trees.
	gImp := make([]Importance, len(parts.Train.Features))
	for j, f := range parts.Train.Features {
		gImp[j].Name = f
	}
	hImp := make([]Importance, len(r.hosts))
	for h := range hImp {
		hImp[h].Name = g.hosts[h].Name
	}
	for _, t := range r.b.trees[:kept] {
		for _, n := range t.Nodes {
			switch {
			case n.Leaf:
			case n.Host == GuestSide:
				gImp[n.Feature].Gain += n.Gain
				gImp[n.Feature].Splits++
			default:
				hImp[n.Host].Gain += n.Gain
				hImp[n.Host].Splits++
			}
		}
	}
	var val lr.Metrics
	if kept > 0 && kept <= len(r.b.history) {
		val = r.b.history[kept-1].Validation
	}
	dur := cfg.Now().Sub(r.started)
	s := r.s
	return &GuestModel{
		Format:   GuestFormat,
		ModelID:  cfg.ModelID,
		Version:  cfg.Version,
		Features: append([]string(nil), parts.Train.Features...),
		Base:     r.b.base,
		Trees:    append([]Tree(nil), r.b.trees[:kept]...),
		Hosts:    refs,
		Metrics: Metrics{Validation: val, Test: test, History: append([]TreeStats(nil), r.b.history...),
			Trees: len(r.b.trees), Kept: kept},
		Card: Card{
			Data: CardData{
				Split: cfg.Split, TrainRows: parts.Train.Len(), ValidationRows: parts.Validation.Len(),
				TestRows: parts.Test.Len(), PositiveRate: pos / float64(parts.Train.Len()),
				GuestFeatures: parts.Train.X.Cols, HostFeatures: hostFeat,
			},
			Hyperparameters: cfg.Train,
			ClassWeights:    [2]float64{r.b.neg, r.b.pos},
			Importance:      CardImportance{Guest: gImp, Hosts: hImp},
			Privacy: CardPrivacy{
				Scheme:             "CKKS (lattigo v6.1.1), coefficient encoding of exact integers, symmetric-key encryption by the guest, no evaluation keys",
				LogN:               s.p.LogN,
				LogQ:               s.p.LogQ(),
				Primes:             len(s.p.Q),
				SecurityBits:       s.p.SecurityBits(),
				GradientBits:       cfg.Train.GradientBits,
				Stride:             s.bud.Stride,
				Alpha:              s.bud.Alpha,
				Shift:              s.bud.Shift,
				FloodBits:          s.p.FloodBits,
				FloodLog2:          s.bud.FloodLog2,
				HistogramNoise:     noise,
				FirstTreeGuestOnly: cfg.Train.FirstTreeGuestOnly,
				Disclosures:        disclosures(cfg.Train, len(r.hosts)),
			},
			StartedAt:    r.started,
			Duration:     dur,
			DurationText: dur.Round(time.Millisecond).String(),
		},
	}
}
