package hetero

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// checkParity compares a federated run with the plaintext oracle trained on
// the joined data with the same hyper-parameters and sigmoid.
func checkParity(t *testing.T, gt *dataset.Table, hts []*dataset.Table, cfg lr.Config, minAUC float64) fedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	split := dataset.DefaultSplit()
	run, err := runFed(ctx, gt, hts, GuestConfig{Train: cfg, Split: split, ModelID: "m-test", Version: "3"}, fedOpts{})
	if err != nil {
		t.Fatal(err)
	}
	om, otest, err := oracle(ctx, gt, hts, cfg, split)
	if err != nil {
		t.Fatal(err)
	}
	fed := run.guest.Metrics.Test
	t.Logf("federated test AUC %.4f KS %.4f (epochs %d, best %d); oracle AUC %.4f KS %.4f",
		fed.AUC, fed.KS, run.guest.Metrics.Epochs, run.guest.Metrics.BestEpoch, otest.AUC, otest.KS)
	if d := math.Abs(fed.AUC - otest.AUC); d > 0.005 {
		t.Errorf("federated test AUC %.4f differs from the oracle's %.4f by %.4f (> 0.005)", fed.AUC, otest.AUC, d)
	}
	if fed.AUC < minAUC {
		t.Errorf("federated test AUC %.4f < %.3f", fed.AUC, minAUC)
	}
	// The exported halves, applied to raw features as serving will, give
	// the metrics the guest recorded.
	if served := scoreHalves(t, run, gt, hts, split); math.Abs(served.AUC-fed.AUC) > 1e-6 {
		t.Errorf("halves score AUC %.6f, the guest recorded %.6f", served.AUC, fed.AUC)
	}
	// Same weights as the oracle, up to fixed-point rounding.
	w := append([]float64(nil), run.guest.Weights...)
	for _, h := range run.hosts {
		w = append(w, h.Weights...)
	}
	for j, v := range om.Weights {
		if math.Abs(w[j]-v) > 1e-4 {
			t.Errorf("weight %d: federated %.6f, oracle %.6f", j, w[j], v)
		}
	}
	if math.Abs(run.guest.Bias-om.Bias) > 1e-4 {
		t.Errorf("bias: federated %.6f, oracle %.6f", run.guest.Bias, om.Bias)
	}
	for h, hm := range run.hosts {
		if hm.ModelID != "m-test" || hm.Version != "3" || hm.HostIndex != h || run.guest.Hosts[h].ModelDigest == "" {
			t.Errorf("host %d half not linked: %+v", h, hm)
		}
		if d, _ := hm.Digest(); d != run.guest.Hosts[h].ModelDigest {
			t.Errorf("host %d digest %s, guest recorded %s", h, d, run.guest.Hosts[h].ModelDigest)
		}
	}
	return run
}

// TestParityCredit trains on the bundled credit data (guest 13 features,
// host 10) with the default hyper-parameters: Taylor sigmoid, balanced
// class weights, L2, inverse-time decay, early stopping.
func TestParityCredit(t *testing.T) {
	gt, ht := credit(t)
	run := checkParity(t, gt, []*dataset.Table{ht}, lr.DefaultConfig(), 0.715)
	c := run.guest.Card
	if c.Privacy.SecurityBits != 128 || !strings.Contains(c.Privacy.ScoreMasking, "perfect") || c.Privacy.FloodBits < 40 || c.Data.TrainRows+c.Data.ValidationRows+c.Data.TestRows != gt.Len() {
		t.Errorf("card %+v", c)
	}
}

// TestMultiHostParity splits the host's features across two hosts.
func TestMultiHostParity(t *testing.T) {
	gt, ht := credit(t)
	a, b := splitHost(ht, 5)
	cfg := lr.DefaultConfig()
	cfg.Epochs, cfg.Patience = 6, 0 // shorter than the single-host run
	checkParity(t, gt, []*dataset.Table{a, b}, cfg, 0.715)
}

// TestParitySyntheticThreeHosts exercises more hosts, features spanning
// several ciphertexts per host, unweighted classes and a constant rate.
func TestParitySyntheticThreeHosts(t *testing.T) {
	gt, hts, _, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: 6000, GuestFeatures: 20, HostFeatures: []int{3, 40, 1}, Seed: 5, Signal: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lr.DefaultConfig()
	cfg.Epochs = 4
	cfg.Patience = 0
	cfg.BatchSize = 700
	cfg.ClassWeights = lr.ClassWeighting{Mode: lr.Unweighted}
	cfg.Schedule = lr.Schedule{Kind: lr.Constant}
	checkParity(t, gt, hts, cfg, 0.6)
}

func TestModelExportRoundTrip(t *testing.T) {
	gm := &GuestModel{Format: GuestFormat, ModelID: "m", Version: "1", Features: []string{"a", "b"}, Weights: []float64{0.5, -1}, Bias: 0.25,
		Standardisation: dataset.Standardisation{Means: []float64{1, 2}, Stds: []float64{2, 4}}}
	b, err := gm.Export()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseGuestModel(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := gm.PartialScore([]float64{3, 6})
	s2, _ := back.PartialScore([]float64{3, 6})
	if s1 != s2 || s1 != 0.25+0.5*1-1*1 {
		t.Fatalf("scores %v %v", s1, s2)
	}
	hm := &HostModel{Format: HostFormat, ModelID: "m", Version: "1", Features: []string{"c"}, Weights: []float64{2},
		Standardisation: dataset.Standardisation{Means: []float64{0}, Stds: []float64{1}}}
	hb, _ := hm.Export()
	if _, err := ParseHostModel(bytes.NewReader(hb)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseHostModel(bytes.NewReader(b)); err == nil {
		t.Fatal("a guest half parsed as a host half")
	}
	bad := bytes.Replace(b, []byte(`"stds": [`), []byte(`"stds": [0, `), 1)
	if _, err := ParseGuestModel(bytes.NewReader(bad)); err == nil {
		t.Fatal("malformed standardisation accepted")
	}
}
