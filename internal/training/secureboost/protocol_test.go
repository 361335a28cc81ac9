package secureboost

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// checkParity trains federated and the plaintext oracle on the joined
// data and requires the same model: the same trees, splits and leaf
// weights, hence the same scores, exactly.
func checkParity(t *testing.T, gt *dataset.Table, hts []*dataset.Table, cfg Config, p Params) fedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	split := dataset.DefaultSplit()
	run, err := runFed(ctx, gt, hts, GuestConfig{Train: cfg, Split: split, Params: p, ModelID: "m-test", Version: "3"}, fedOpts{})
	if err != nil {
		t.Fatal(err)
	}
	om, otest, err := Centralized(ctx, gt, hts, split, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fed := run.guest.Metrics.Test
	t.Logf("federated test AUC %.4f KS %.4f (%d trees, %d kept); oracle AUC %.4f KS %.4f (%d trees)",
		fed.AUC, fed.KS, run.guest.Metrics.Trees, run.guest.Metrics.Kept, otest.AUC, otest.KS, len(om.Trees))
	if fed.AUC != otest.AUC || fed.KS != otest.KS {
		t.Errorf("federated test AUC %v KS %v, oracle %v %v", fed.AUC, fed.KS, otest.AUC, otest.KS)
	}
	if len(run.guest.Trees) != len(om.Trees) {
		t.Fatalf("federated model has %d trees, the oracle's %d", len(run.guest.Trees), len(om.Trees))
	}
	offs := []int{len(gt.Features)}
	for _, ht := range hts {
		offs = append(offs, offs[len(offs)-1]+len(ht.Features))
	}
	for k, ft := range run.guest.Trees {
		ot := om.Trees[k]
		if len(ft.Nodes) != len(ot.Nodes) {
			t.Fatalf("tree %d: %d nodes, oracle %d", k, len(ft.Nodes), len(ot.Nodes))
		}
		for i, fn := range ft.Nodes {
			on := ot.Nodes[i]
			if fn.Leaf != on.Leaf || fn.Value != on.Value || fn.Gain != on.Gain || fn.Left != on.Left || fn.Right != on.Right {
				t.Fatalf("tree %d node %d: federated %+v, oracle %+v", k, i, fn, on)
			}
			if fn.Leaf {
				continue
			}
			feature, threshold := fn.Feature, fn.Threshold
			if fn.Host != GuestSide {
				s := run.hosts[fn.Host].Splits[fn.SplitID]
				feature, threshold = offs[fn.Host]+s.Feature, s.Threshold
				if s.Tree != k || s.Node != i {
					t.Errorf("tree %d node %d: the host's split %d is recorded at tree %d node %d", k, i, fn.SplitID, s.Tree, s.Node)
				}
			}
			if feature != on.Feature || threshold != on.Threshold {
				t.Fatalf("tree %d node %d: split on joined feature %d ≤ %v, oracle %d ≤ %v", k, i, feature, threshold, on.Feature, on.Threshold)
			}
		}
	}
	// The exported halves score the test rows as serving will, and the
	// scores equal the plaintext model's.
	served := servedLogits(t, run, gt, hts, split)
	joined, err := Join(gt, hts...)
	if err != nil {
		t.Fatal(err)
	}
	want, err := om.Logits(split.Apply(joined).Test.X)
	if err != nil {
		t.Fatal(err)
	}
	for i := range served {
		if d := math.Abs(served[i] - want[i]); d > 1e-9 {
			t.Fatalf("test row %d: served logit %v, plaintext model %v", i, served[i], want[i])
		}
	}
	if got := lr.Evaluate(served, split.Apply(gt).Test.Labels); got.AUC != fed.AUC {
		t.Errorf("served AUC %v, the guest recorded %v", got.AUC, fed.AUC)
	}
	for h, hm := range run.hosts {
		if hm.ModelID != "m-test" || hm.Version != "3" || hm.HostIndex != h || run.guest.Hosts[h].Splits != len(hm.Splits) {
			t.Errorf("host %d half not linked: %d splits, guest expects %d", h, len(hm.Splits), run.guest.Hosts[h].Splits)
		}
		if d, _ := hm.Digest(); d != run.guest.Hosts[h].ModelDigest {
			t.Errorf("host %d digest differs from the guest's record", h)
		}
	}
	return run
}

func TestParityOneHost(t *testing.T) {
	g, h := credit(t)
	ts := subset(6000, g, h)
	cfg := DefaultConfig()
	cfg.Trees = 6
	run := checkParity(t, ts[0], ts[1:], cfg, Params{})
	hostSplits := 0
	for _, tr := range run.guest.Trees {
		for _, n := range tr.Nodes {
			if !n.Leaf && n.Host == 0 {
				hostSplits++
			}
		}
	}
	if hostSplits == 0 {
		t.Fatal("no host split: the test does not exercise the protocol")
	}
}

func TestParityTwoHostsSubsampleGuestFirst(t *testing.T) {
	g, h := credit(t)
	ts := subset(5000, g, h)
	h0, h1 := splitHost(ts[1], 5)
	cfg := DefaultConfig()
	cfg.Trees = 5
	cfg.MaxDepth = 4
	cfg.Subsample = 0.7
	cfg.FirstTreeGuestOnly = true
	cfg.ClassWeights = lr.ClassWeighting{Mode: lr.Manual, Negative: 1, Positive: 2.5}
	p := DefaultParams()
	p.PartSize = 3 // levels travel in several parts
	run := checkParity(t, ts[0], []*dataset.Table{h0, h1}, cfg, p)
	for _, n := range run.guest.Trees[0].Nodes {
		if !n.Leaf && n.Host != GuestSide {
			t.Fatal("the first tree has a host split")
		}
	}
}

// TestHistogramNoise: a host adding noise to its released sums still
// trains a model close to the oracle's, and the card records the noise.
func TestHistogramNoise(t *testing.T) {
	g, h := credit(t)
	ts := subset(5000, g, h)
	cfg := DefaultConfig()
	cfg.Trees = 5
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	split := dataset.DefaultSplit()
	run, err := runFed(ctx, ts[0], ts[1:], GuestConfig{Train: cfg, Split: split}, fedOpts{host: func(_ int, c *HostConfig) { c.HistogramNoise = 2 }})
	if err != nil {
		t.Fatal(err)
	}
	_, otest, err := Centralized(ctx, ts[0], ts[1:], split, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fed := run.guest.Metrics.Test.AUC
	t.Logf("test AUC with histogram noise σ = 2: %.4f, oracle %.4f", fed, otest.AUC)
	if math.Abs(fed-otest.AUC) > 0.02 {
		t.Errorf("noisy run AUC %.4f too far from the oracle's %.4f", fed, otest.AUC)
	}
	if n := run.guest.Card.Privacy.HistogramNoise; len(n) != 1 || n[0] != 2 || run.hosts[0].HistogramNoise != 2 {
		t.Errorf("card noise %v, host half %v", n, run.hosts[0].HistogramNoise)
	}
}
