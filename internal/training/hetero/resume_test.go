package hetero

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// runPair trains one guest and one host over a pipe with the given
// configurations.
func runPair(ctx context.Context, gt, ht *dataset.Table, gc GuestConfig, hc HostConfig) (*GuestModel, *HostModel, error, error) {
	a, b := Pipe(64)
	defer a.Close()
	host, err := NewHost(hc, ht, b)
	if err != nil {
		return nil, nil, nil, err
	}
	guest, err := NewGuest(gc, gt, []HostPeer{{Name: "h", Transport: a}})
	if err != nil {
		return nil, nil, err, nil
	}
	var hm *HostModel
	var herr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hm, herr = host.Run(ctx) }()
	gm, gerr := guest.Run(ctx)
	wg.Wait()
	return gm, hm, gerr, herr
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// TestResumeMatchesUninterrupted resumes a run from every party's
// checkpoint after epoch 1 and compares the model with the uninterrupted
// run's.
func TestResumeMatchesUninterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	g, h := credit(t)
	ts := subset(4000, g, h)
	gt, ht := ts[0], ts[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := lr.DefaultConfig()
	cfg.Epochs = 4
	var gcps []*GuestCheckpoint
	var hcps []*HostCheckpoint
	gc := GuestConfig{ModelID: "m", Version: "2", Train: cfg, Checkpoint: func(c *GuestCheckpoint) error { gcps = append(gcps, c); return nil }}
	hc := HostConfig{Name: "h", Checkpoint: func(c *HostCheckpoint) error { hcps = append(hcps, c); return nil }}
	want, wantH, gerr, herr := runPair(ctx, gt, ht, gc, hc)
	if gerr != nil || herr != nil {
		t.Fatal(gerr, herr)
	}
	if len(gcps) != want.Metrics.Epochs || len(hcps) != len(gcps) {
		t.Fatalf("%d guest and %d host checkpoints for %d epochs", len(gcps), len(hcps), want.Metrics.Epochs)
	}
	// The checkpoints survive their encoding.
	b, err := gcps[1].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	gcp, err := ParseGuestCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = hcps[1].Marshal(); err != nil {
		t.Fatal(err)
	}
	hcp, err := ParseHostCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}

	gc2 := GuestConfig{ModelID: "m", Version: "2", Train: cfg, Resume: gcp}
	got, gotH, gerr, herr := runPair(ctx, gt, ht, gc2, HostConfig{Name: "h", Resume: hcp})
	if gerr != nil || herr != nil {
		t.Fatal(gerr, herr)
	}
	dw, dh := maxDiff(got.Weights, want.Weights), maxDiff(gotH.Weights, wantH.Weights)
	t.Logf("resumed after epoch 1: guest weights differ by %.2g, host weights by %.2g, bias by %.2g; test AUC %.6f vs %.6f",
		dw, dh, math.Abs(got.Bias-want.Bias), got.Metrics.Test.AUC, want.Metrics.Test.AUC)
	if dw > 1e-9 || dh > 1e-9 || math.Abs(got.Bias-want.Bias) > 1e-9 {
		t.Errorf("the resumed model differs from the uninterrupted one")
	}
	if math.Abs(got.Metrics.Test.AUC-want.Metrics.Test.AUC) > 1e-4 || got.Metrics.Epochs != want.Metrics.Epochs ||
		got.Metrics.BestEpoch != want.Metrics.BestEpoch || len(got.Metrics.History) != len(want.Metrics.History) {
		t.Errorf("metrics %+v, want %+v", got.Metrics, want.Metrics)
	}

	// The last checkpoint (stop set): only the test scores and the finish
	// remain.
	last := gcps[len(gcps)-1]
	got, _, gerr, herr = runPair(ctx, gt, ht, GuestConfig{ModelID: "m", Version: "2", Train: cfg, Resume: last},
		HostConfig{Name: "h", Resume: hcps[len(hcps)-1]})
	if gerr != nil || herr != nil {
		t.Fatal(gerr, herr)
	}
	if d := maxDiff(got.Weights, want.Weights); d > 1e-6 {
		t.Errorf("resumed at the end: weights differ by %g", d)
	}

	// Disagreeing checkpoints abort both sides.
	_, _, gerr, herr = runPair(ctx, gt, ht, GuestConfig{ModelID: "m", Version: "2", Train: cfg, Resume: gcps[2]}, HostConfig{Name: "h", Resume: hcp})
	if !errors.Is(herr, ErrMismatch) || !errors.Is(gerr, ErrAborted) {
		t.Errorf("epoch mismatch: guest %v, host %v", gerr, herr)
	}
	_, _, gerr, herr = runPair(ctx, gt, ht, GuestConfig{ModelID: "m", Version: "2", Train: cfg, Resume: gcp}, HostConfig{Name: "h"})
	if !errors.Is(herr, ErrMismatch) || !errors.Is(gerr, ErrAborted) {
		t.Errorf("host without checkpoint: guest %v, host %v", gerr, herr)
	}
	other := *hcp
	other.ModelID = "other"
	_, _, gerr, herr = runPair(ctx, gt, ht, gc2, HostConfig{Name: "h", Resume: &other})
	if !errors.Is(herr, ErrMismatch) || gerr == nil {
		t.Errorf("other model: guest %v, host %v", gerr, herr)
	}
	// A guest checkpoint of another model is refused before any message.
	bad := *gcp
	bad.Version = "9"
	if _, err := NewGuest(GuestConfig{ModelID: "m", Version: "2", Train: cfg, Resume: &bad}, gt, []HostPeer{{Name: "h", Transport: &PipeEnd{}}}); !errors.Is(err, ErrMismatch) {
		t.Errorf("guest checkpoint of another version: %v", err)
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	cfg := lr.DefaultConfig()
	g := &GuestCheckpoint{ModelID: "m", Version: "1", Train: cfg, Epoch: 0, Weights: []float64{1}, BestWeights: []float64{1},
		History: []lr.EpochStats{{}}}
	gb, _ := g.Marshal()
	h := &HostCheckpoint{ModelID: "m", Version: "1", Train: cfg, Weights: []float64{1}, Best: []float64{2}}
	hb, _ := h.Marshal()
	f.Add(gb)
	f.Add(hb)
	f.Add([]byte(`{"epoch":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseGuestCheckpoint(b); err == nil {
			if len(c.Weights) != len(c.BestWeights) || len(c.History) != c.Epoch+1 {
				t.Fatalf("accepted an inconsistent guest checkpoint %+v", c)
			}
		}
		if c, err := ParseHostCheckpoint(b); err == nil && len(c.Weights) != len(c.Best) {
			t.Fatalf("accepted an inconsistent host checkpoint %+v", c)
		}
	})
}
