package sbbench

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/secureboost"
)

// TestRunSmall runs the measurement on a slice of the credit data over
// mTLS on loopback and checks its fields.
func TestRunSmall(t *testing.T) {
	g, h, err := CreditTables()
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, 4000)
	for i := range idx {
		idx[i] = i
	}
	g, h = g.Rows(idx), h.Rows(idx)
	cfg := secureboost.DefaultConfig()
	cfg.Trees = 3
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, g, []*dataset.Table{h}, Options{Config: cfg, Ablations: true, RoutingEpsilons: []float64{1, 50}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	switch {
	case res.Rows != 4000 || res.FeaturesGuest != 13 || res.FeaturesHost != 10 || res.Trees != 3:
		t.Errorf("shape %+v", res)
	case res.AUCFederated != res.AUCCentralized:
		t.Errorf("federated AUC %v, centralized %v: the protocol should reproduce the oracle exactly", res.AUCFederated, res.AUCCentralized)
	case res.BytesTotal <= 0 || res.BytesPerTree <= 0 || res.WireBytes < res.BytesTotal:
		t.Errorf("bytes: total %d, per tree %d, on the wire %d", res.BytesTotal, res.BytesPerTree, res.WireBytes)
	case res.AUCGuestOnly == nil || res.AUCHostOnly == nil || *res.AUCGuestOnly >= res.AUCCentralized:
		t.Errorf("ablations %v %v", res.AUCGuestOnly, res.AUCHostOnly)
	case len(res.AUCRouting) != 2 || res.AUCRouting[1].AUC != res.AUCFederated || res.AUCRouting[0].AUC >= res.AUCFederated:
		t.Errorf("routing noise: %+v (ε = 50 should change nothing, ε = 1 should cost accuracy)", res.AUCRouting)
	}
}

// TestBenchJSON prints the measurement of FEDRISK_SB_BENCH (credit or
// synthetic; FEDRISK_SB_TREES, FEDRISK_SB_ROWS adjust it) as JSON. It is
// how docs/benchmarks.md's SecureBoost numbers are taken until the bench
// command exists; without the variable it skips.
func TestBenchJSON(t *testing.T) {
	which := os.Getenv("FEDRISK_SB_BENCH")
	if which == "" {
		t.Skip("set FEDRISK_SB_BENCH=credit or synthetic")
	}
	cfg := secureboost.DefaultConfig()
	if v, err := strconv.Atoi(os.Getenv("FEDRISK_SB_TREES")); err == nil {
		cfg.Trees = v
	}
	var g, h *dataset.Table
	var err error
	switch which {
	case "credit":
		g, h, err = CreditTables()
	case "synthetic":
		rows := 100_000
		if v, e := strconv.Atoi(os.Getenv("FEDRISK_SB_ROWS")); e == nil {
			rows = v
		}
		g, h, err = SyntheticTables(rows, 30, 300, 7)
	default:
		t.Fatalf("unknown data %q", which)
	}
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Config: cfg, Ablations: os.Getenv("FEDRISK_SB_ABLATIONS") != "", Progress: os.Stderr}
	if o.Ablations {
		o.RoutingEpsilons = []float64{0.5, 1, 2, 4, 8}
	}
	res, err := Run(context.Background(), g, []*dataset.Table{h}, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	os.Stdout.Write(append(b, '\n'))
	if res.AUCFederated != res.AUCCentralized {
		t.Errorf("federated AUC %v differs from the oracle's %v", res.AUCFederated, res.AUCCentralized)
	}
}
