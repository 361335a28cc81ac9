package hetero

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"fmt"
	"io"
	"math"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Model formats.
const (
	GuestFormat = "fedrisk-hetero-lr-guest/1"
	HostFormat  = "fedrisk-hetero-lr-host/1"
)

// MaxModelBytes bounds a model document accepted by ParseGuestModel and
// ParseHostModel.
const MaxModelBytes = 8 << 20

// GuestModel is the guest's half of a model: its weights and intercept on
// its standardised features, and the card. A score is
// Logistic(GuestModel.PartialScore(x_guest) + Σ_h HostModel_h.PartialScore(x_h)).
type GuestModel struct {
	Format          string                  `json:"format"`
	ModelID         string                  `json:"model_id"`
	Version         string                  `json:"version"`
	Features        []string                `json:"features"`
	Weights         []float64               `json:"weights"`
	Bias            float64                 `json:"bias"`
	Standardisation dataset.Standardisation `json:"standardisation"`
	Hosts           []HostRef               `json:"hosts"`
	Metrics         Metrics                 `json:"metrics"`
	Card            Card                    `json:"card"`
}

// HostRef names a host's half from the guest's side.
type HostRef struct {
	Name     string `json:"name"`
	Index    int    `json:"index"`
	Features int    `json:"features"`
	// ModelDigest is the SHA-256 of the host's exported half, as the host
	// reported it.
	ModelDigest string `json:"model_digest"`
}

// HostModel is a host's half of a model: its weights on its standardised
// features. Hosts have no intercept.
type HostModel struct {
	Format          string                  `json:"format"`
	ModelID         string                  `json:"model_id"`
	Version         string                  `json:"version"`
	HostIndex       int                     `json:"host_index"`
	Features        []string                `json:"features"`
	Weights         []float64               `json:"weights"`
	Standardisation dataset.Standardisation `json:"standardisation"`
	TrainedAt       time.Time               `json:"trained_at"`
	BestEpoch       int                     `json:"best_epoch"`
}

// Metrics are the guest's evaluation of the model.
type Metrics struct {
	// Validation is the validation set at the kept epoch.
	Validation lr.Metrics `json:"validation"`
	// Test is the held-out test set (scored once, after training).
	Test      lr.Metrics      `json:"test"`
	History   []lr.EpochStats `json:"history"`
	BestEpoch int             `json:"best_epoch"`
	Epochs    int             `json:"epochs"`
}

// Card describes how the model was made.
type Card struct {
	Data            CardData      `json:"data"`
	Hyperparameters lr.Config     `json:"hyperparameters"`
	ClassWeights    [2]float64    `json:"class_weights"` // negative, positive
	Privacy         CardPrivacy   `json:"privacy"`
	StartedAt       time.Time     `json:"started_at"`
	Duration        time.Duration `json:"duration_ns"`
	DurationText    string        `json:"duration"`
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

// CardPrivacy records the privacy parameters of the run.
type CardPrivacy struct {
	Scheme        string   `json:"scheme"`
	LogN          int      `json:"log_n"`
	LogQ          float64  `json:"log_q"`
	LogQP         float64  `json:"log_qp"`
	Primes        int      `json:"primes"`
	ReturnPrimes  int      `json:"return_primes"`
	SecurityBits  int      `json:"security_bits"`
	Secret        string   `json:"secret"`
	ErrorStd      float64  `json:"error_std"`
	ScoreMasking  string   `json:"score_masking"`
	GradientMask  string   `json:"gradient_mask"`
	FloodBits     int      `json:"flood_bits"`
	FloodLog2     int      `json:"flood_log2"`
	Rounding      string   `json:"rounding"`
	FixedPoint    string   `json:"fixed_point"`
	GradientError float64  `json:"gradient_error_log2"`
	Disclosures   []string `json:"disclosures"`
}

// PartialScore returns the guest's part of the logit for raw (not yet
// standardised) guest features x: bias + Σ_j w_j·(x_j − mean_j)/std_j.
func (m *GuestModel) PartialScore(x []float64) (float64, error) {
	if len(x) != len(m.Weights) {
		return 0, fmt.Errorf("hetero: %d features, model has %d", len(x), len(m.Weights))
	}
	s := m.Bias
	for j, w := range m.Weights {
		s += w * (x[j] - m.Standardisation.Means[j]) / m.Standardisation.Stds[j]
	}
	return s, nil
}

// PartialScore returns the host's part of the logit for raw host features.
func (m *HostModel) PartialScore(x []float64) (float64, error) {
	if len(x) != len(m.Weights) {
		return 0, fmt.Errorf("hetero: %d features, model has %d", len(x), len(m.Weights))
	}
	var s float64
	for j, w := range m.Weights {
		s += w * (x[j] - m.Standardisation.Means[j]) / m.Standardisation.Stds[j]
	}
	return s, nil
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
	if err := checkHalf(m.ModelID, m.Version, m.Features, m.Weights, m.Standardisation); err != nil {
		return nil, err
	}
	if !finite(m.Bias) {
		return nil, fmt.Errorf("%w: bias", ErrMalformed)
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
	if err := checkHalf(m.ModelID, m.Version, m.Features, m.Weights, m.Standardisation); err != nil {
		return nil, err
	}
	return &m, nil
}

func parseModel(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxModelBytes+1))
	if err != nil {
		return err
	}
	if len(b) > MaxModelBytes {
		return fmt.Errorf("%w: model over %d bytes", ErrOversized, MaxModelBytes)
	}
	return jsonPayload(b, v)
}

func checkHalf(id, version string, features []string, w []float64, st dataset.Standardisation) error {
	switch {
	case id == "" || len(id) > 128 || version == "" || len(version) > 64:
		return fmt.Errorf("%w: model id or version", ErrMalformed)
	case len(features) == 0 || len(features) != len(w):
		return fmt.Errorf("%w: %d features and %d weights", ErrMalformed, len(features), len(w))
	}
	for _, v := range w {
		if !finite(v) {
			return fmt.Errorf("%w: weight", ErrMalformed)
		}
	}
	if err := st.Validate(len(w)); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func jsonBytes(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// model assembles the guest's half.
func (r *guestRun) model(val, test lr.Metrics) *GuestModel {
	g := r.g
	cfg := g.cfg
	parts := r.prep.parts
	p := r.s.p
	var pos float64
	for _, y := range parts.Train.Labels {
		pos += y
	}
	hostFeat := make([]int, len(r.hosts))
	refs := make([]HostRef, len(r.hosts))
	for h, gh := range r.hosts {
		hostFeat[h] = gh.features
		refs[h] = HostRef{Name: g.hosts[h].Name, Index: h, Features: gh.features, ModelDigest: gh.digest}
	}
	dur := cfg.Now().Sub(r.started)
	disclosures := []string{
		"hosts learn nothing about labels, guest features or guest weights: they see only CKKS ciphertexts under the guest's key and flooded, masked decryptions of their own gradient",
		"the guest learns its own gradient each batch (as in any hetero-LR), which is a function of the hosts' partial scores on the batch",
		"the guest learns the hosts' summed partial scores on validation rows every epoch and on test rows once (with one host: that host's partial scores) — the same disclosure as online scoring",
		"hosts learn the public sizes (row counts per split part, batch plan), which epochs improved the validation loss and when training stopped",
	}
	if len(r.hosts) > 1 {
		disclosures = append(disclosures, "hosts share the mask seed: a host colluding with the guest can unmask another host's partial scores")
	}
	return &GuestModel{
		Format:          GuestFormat,
		ModelID:         cfg.ModelID,
		Version:         cfg.Version,
		Features:        append([]string(nil), parts.Train.Features...),
		Weights:         append([]float64(nil), r.w...),
		Bias:            r.bias,
		Standardisation: r.prep.std,
		Hosts:           refs,
		Metrics: Metrics{
			Validation: val, Test: test, History: r.stats.history,
			BestEpoch: r.stats.bestEpoch, Epochs: r.stats.epochs,
		},
		Card: Card{
			Data: CardData{
				Split: cfg.Split, TrainRows: parts.Train.Len(), ValidationRows: parts.Validation.Len(),
				TestRows: parts.Test.Len(), PositiveRate: pos / float64(parts.Train.Len()),
				GuestFeatures: parts.Train.X.Cols, HostFeatures: hostFeat,
			},
			Hyperparameters: cfg.Train,
			ClassWeights:    [2]float64{r.neg, r.pos},
			Privacy: CardPrivacy{
				Scheme:        "CKKS (lattigo v6.1.1), coefficient encoding, symmetric-key encryption by the guest, no evaluation keys",
				LogN:          p.LogN,
				LogQ:          p.LogQ(),
				LogQP:         p.LogQ(),
				Primes:        len(p.Q),
				ReturnPrimes:  p.OutPrimes,
				SecurityBits:  p.SecurityBits(),
				Secret:        "uniform ternary",
				ErrorStd:      3.2,
				ScoreMasking:  scoreMasking(p, len(r.hosts)),
				GradientMask:  "uniform over Z_Q_out per element (perfect hiding)",
				FloodBits:     p.FloodBits,
				FloodLog2:     r.s.bud.FloodLog2,
				Rounding:      fmt.Sprintf("decryptions returned to hosts carry uniform noise in [-2^%d, 2^%d]", r.s.bud.FloodLog2, r.s.bud.FloodLog2),
				FixedPoint:    fmt.Sprintf("scores 2^-%d, features 2^-%d, class weights 2^-%d, ciphertext scale 2^%d", p.ScoreBits, p.FeatureBits, p.WeightBits, r.s.bud.Alpha),
				GradientError: r.s.bud.ErrorLog2,
				Disclosures:   disclosures,
			},
			StartedAt:    r.started,
			Duration:     dur,
			DurationText: dur.Round(time.Millisecond).String(),
		},
	}
}

// model assembles the host's half.
func (r *hostRun) model(fin finish) *HostModel {
	return &HostModel{
		Format:          HostFormat,
		ModelID:         r.hl.ModelID,
		Version:         r.hl.Version,
		HostIndex:       r.hl.HostIndex,
		Features:        append([]string(nil), r.prep.parts.Train.Features...),
		Weights:         append([]float64(nil), r.w...),
		Standardisation: r.prep.std,
		TrainedAt:       r.h.cfg.Now().UTC(),
		BestEpoch:       fin.BestEpoch,
	}
}

func scoreMasking(p Params, hosts int) string {
	if modularMasks(hosts) {
		return fmt.Sprintf("(u + m) mod 2^%d with m uniform: perfect hiding", p.scoreMaskBits(hosts))
	}
	return fmt.Sprintf("u + m with m uniform on [0, 2^%d), |u| < 2^%d: %d-bit statistical hiding", p.scoreMaskBits(hosts), p.ScoreBits+p.ScoreBoundBits, p.MaskBits)
}
