package lr

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// bruteAUC counts pairs: P(score_pos > score_neg) + ½·P(tie).
func bruteAUC(s, y []float64) float64 {
	var num, den float64
	for i := range s {
		for j := range s {
			if y[i] == 1 && y[j] == 0 {
				den++
				switch {
				case s[i] > s[j]:
					num++
				case s[i] == s[j]:
					num += 0.5
				}
			}
		}
	}
	return num / den
}

func TestAUC(t *testing.T) {
	tests := []struct {
		name string
		s, y []float64
		want float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []float64{0, 0, 1, 1}, 1},
		{"inverted", []float64{0.9, 0.8, 0.2, 0.1}, []float64{0, 0, 1, 1}, 0},
		{"all tied", []float64{0.5, 0.5, 0.5, 0.5}, []float64{0, 1, 0, 1}, 0.5},
		{"some ties", []float64{0.1, 0.4, 0.4, 0.8}, []float64{0, 0, 1, 1}, 0.875},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AUC(tt.s, tt.y); math.Abs(got-tt.want) > 1e-12 {
				t.Fatalf("AUC = %v, want %v", got, tt.want)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := 0; trial < 20; trial++ {
		n := 50 + rng.IntN(100)
		s, y := make([]float64, n), make([]float64, n)
		for i := range s {
			s[i] = float64(rng.IntN(10)) // many ties
			if rng.Float64() < 0.3 {
				y[i] = 1
			}
		}
		y[0], y[1] = 0, 1
		if got, want := AUC(s, y), bruteAUC(s, y); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: AUC %v, brute force %v", trial, got, want)
		}
	}
	if !math.IsNaN(AUC([]float64{1, 2}, []float64{1, 1})) {
		t.Fatal("single class should be NaN")
	}
}

func TestKSAndLogLoss(t *testing.T) {
	if ks := KS([]float64{0.1, 0.2, 0.8, 0.9}, []float64{0, 0, 1, 1}); ks != 1 {
		t.Fatalf("KS = %v", ks)
	}
	if ks := KS([]float64{0.5, 0.5}, []float64{0, 1}); ks != 0 {
		t.Fatalf("KS of a tie = %v", ks)
	}
	if ll := LogLoss([]float64{0.5, 0.5}, []float64{0, 1}); math.Abs(ll-math.Ln2) > 1e-12 {
		t.Fatalf("LogLoss = %v", ll)
	}
	u := []float64{-3, 0.2, 40, -40}
	y := []float64{0, 1, 1, 0}
	p := make([]float64, len(u))
	for i := range u {
		p[i] = Logistic(u[i])
	}
	if a, b := LogLossLogits(u, y), LogLoss(p, y); math.Abs(a-b) > 1e-9 {
		t.Fatalf("logit log-loss %v vs %v", a, b)
	}
}

func TestMetricsJSON(t *testing.T) {
	b, err := json.Marshal(Metrics{Rows: 2, AUC: math.NaN(), KS: 0.5, LogLoss: 1})
	if err != nil || string(b) != `{"rows":2,"auc":null,"ks":0.5,"log_loss":1}` {
		t.Fatalf("%s %v", b, err)
	}
	var back Metrics
	if err := json.Unmarshal(b, &back); err != nil || back.KS != 0.5 || back.AUC != 0 {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestScheduleAndSigmoid(t *testing.T) {
	if r := (Schedule{Kind: InverseTime, Decay: 0.5}).Rate(1, 2); r != 0.5 {
		t.Fatalf("inverse time %v", r)
	}
	if r := (Schedule{Kind: Exponential, Decay: 0.5}).Rate(1, 3); r != 0.125 {
		t.Fatalf("exponential %v", r)
	}
	if SigmoidTaylor.Eval(0.4) != 0.6 || math.Abs(SigmoidExact.Eval(0)-0.5) > 0 {
		t.Fatal("sigmoid")
	}
	b, err := json.Marshal(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil || back != DefaultConfig() {
		t.Fatalf("config JSON round trip: %v %+v", err, back)
	}
}

func TestClassWeights(t *testing.T) {
	y := []float64{1, 0, 0, 0}
	neg, pos, err := ClassWeights(ClassWeighting{Mode: Balanced}, y)
	if err != nil || neg != 4.0/6 || pos != 2 {
		t.Fatalf("balanced %v %v %v", neg, pos, err)
	}
	if _, _, err := ClassWeights(ClassWeighting{Mode: Balanced}, []float64{1, 1}); err == nil {
		t.Fatal("single class accepted")
	}
	if _, _, err := ClassWeights(ClassWeighting{Mode: Manual, Negative: 1, Positive: 100}, y); err == nil {
		t.Fatal("weight over the bound accepted")
	}
}

func TestPlan(t *testing.T) {
	p, err := NewPlan(1000, 300, 7)
	if err != nil {
		t.Fatal(err)
	}
	if p.Batches() != 4 || p.MaxBatch() != 300 || len(p.Batch(3)) != 100 {
		t.Fatalf("batches %d max %d", p.Batches(), p.MaxBatch())
	}
	seen := make([]bool, 1000)
	for k := 0; k < p.Batches(); k++ {
		for _, i := range p.Batch(k) {
			if seen[i] {
				t.Fatal("row in two batches")
			}
			seen[i] = true
		}
	}
	q, _ := NewPlan(1000, 300, 7)
	if q.Batch(2)[5] != p.Batch(2)[5] || q.Order(3)[1] != p.Order(3)[1] {
		t.Fatal("plan not deterministic")
	}
}

func TestEarlyStopping(t *testing.T) {
	s := NewEarlyStopping(Config{Patience: 2, MinDelta: 0.01})
	steps := []struct {
		loss       float64
		best, stop bool
	}{{1, true, false}, {0.95, true, false}, {0.945, false, false}, {0.96, false, true}}
	for e, st := range steps {
		best, stop := s.Observe(e, st.loss)
		if best != st.best || stop != st.stop {
			t.Fatalf("epoch %d: best %v stop %v", e, best, stop)
		}
	}
	if e, l := s.Best(); e != 1 || l != 0.95 {
		t.Fatalf("best %d %v", e, l)
	}
}

// TestTrainRecoversPlantedModel trains on synthetic data and checks the
// model ranks close to the planted one.
func TestTrainRecoversPlantedModel(t *testing.T) {
	g, hs, truth, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: 20000, GuestFeatures: 5, HostFeatures: []int{5}, Seed: 3, Signal: 2})
	if err != nil {
		t.Fatal(err)
	}
	x := dataset.HStack(g.X, hs[0].X)
	idx := func(lo, hi int) []int {
		out := make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
		return out
	}
	sel := func(ii []int) Data {
		m := dataset.NewMatrix(len(ii), x.Cols)
		y := make([]float64, len(ii))
		for k, i := range ii {
			copy(m.Row(k), x.Row(i))
			y[k] = g.Labels[i]
		}
		return Data{X: m, Y: y}
	}
	tr, va, te := sel(idx(0, 14000)), sel(idx(14000, 16000)), sel(idx(16000, 20000))
	for _, sig := range []Sigmoid{SigmoidExact, SigmoidTaylor} {
		cfg := DefaultConfig()
		cfg.Sigmoid = sig
		m, hist, err := Train(context.Background(), tr, va, cfg)
		if err != nil {
			t.Fatal(err)
		}
		planted := Model{Weights: append(append([]float64(nil), truth.GuestWeights...), truth.HostWeights[0]...), Bias: truth.Intercept}
		got, best := AUC(m.Logits(te.X), te.Y), AUC(planted.Logits(te.X), te.Y)
		if got < best-0.01 {
			t.Errorf("%s: AUC %.4f, planted model %.4f", sig, got, best)
		}
		if len(hist.Epochs) == 0 || hist.BestEpoch < 0 {
			t.Errorf("%s: history %+v", sig, hist)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Epochs = 0 },
		func(c *Config) { c.BatchSize = 0 },
		func(c *Config) { c.LearningRate = math.NaN() },
		func(c *Config) { c.L2 = -1 },
		func(c *Config) { c.Sigmoid = 9 },
		func(c *Config) { c.Schedule = Schedule{Kind: Exponential, Decay: 2} },
		func(c *Config) { c.ClassWeights = ClassWeighting{Mode: 9} },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if c.Validate() == nil {
			t.Errorf("case %d validated", i)
		}
	}
}
