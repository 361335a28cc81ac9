package secureboost

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// runPair trains one guest and one host over a pipe.
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
	if gerr != nil {
		a.Close()
	}
	wg.Wait()
	return gm, hm, gerr, herr
}

// checkpoints collects both parties' checkpoints through their encodings.
type checkpoints struct {
	mu    sync.Mutex
	guest map[int]*GuestCheckpoint
	host  map[int]*HostCheckpoint
}

func newCheckpoints() *checkpoints {
	return &checkpoints{guest: map[int]*GuestCheckpoint{}, host: map[int]*HostCheckpoint{}}
}

func (c *checkpoints) saveGuest(cp *GuestCheckpoint) error {
	b, err := cp.Marshal()
	if err != nil {
		return err
	}
	back, err := ParseGuestCheckpoint(b)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guest[cp.Tree] = back
	return nil
}

func (c *checkpoints) saveHost(cp *HostCheckpoint) error {
	b, err := cp.Marshal()
	if err != nil {
		return err
	}
	back, err := ParseHostCheckpoint(b)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.host[cp.Tree] = back
	return nil
}

func (c *checkpoints) latestHost() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := -1
	for t := range c.host {
		last = max(last, t)
	}
	return last
}

// TestResumeMatchesUninterrupted interrupts a run after a tree (the
// guest's context is cancelled, both sides fail), resumes both parties
// from their checkpoints in a new session, and requires the model of an
// uninterrupted run, exactly.
func TestResumeMatchesUninterrupted(t *testing.T) {
	g, h := credit(t)
	ts := subset(4000, g, h)
	gt, ht := ts[0], ts[1]
	cfg := DefaultConfig()
	cfg.Trees = 6
	cfg.Subsample = 0.8
	cfg.Patience = 2
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := GuestConfig{ModelID: "m", Version: "2", Train: cfg}
	want, wantH, gerr, herr := runPair(ctx, gt, ht, base, HostConfig{Name: "h"})
	if gerr != nil || herr != nil {
		t.Fatal(gerr, herr)
	}

	// Interrupted after tree 2.
	cps := newCheckpoints()
	ictx, icancel := context.WithCancel(ctx)
	gc := base
	gc.Checkpoint = cps.saveGuest
	gc.Progress = func(p Progress) {
		if p.Tree == 2 {
			icancel()
		}
	}
	_, _, gerr, herr = runPair(ictx, gt, ht, gc, HostConfig{Name: "h", Checkpoint: cps.saveHost})
	icancel()
	if gerr == nil || herr == nil {
		t.Fatalf("the interrupted run did not fail on both sides: %v, %v", gerr, herr)
	}
	last := cps.latestHost()
	if last < 1 || cps.guest[last] == nil {
		t.Fatalf("checkpoints: host's latest %d, guest's %v", last, cps.guest)
	}

	// Resumed from the latest tree both hold.
	gc = base
	gc.Resume = cps.guest[last]
	got, gotH, gerr, herr := runPair(ctx, gt, ht, gc, HostConfig{Name: "h", Resume: cps.host[last]})
	if gerr != nil || herr != nil {
		t.Fatal(gerr, herr)
	}
	if !reflect.DeepEqual(got.Trees, want.Trees) || got.Base != want.Base {
		t.Fatal("the resumed model's trees differ from the uninterrupted run's")
	}
	if got.Metrics.Test != want.Metrics.Test || got.Metrics.Kept != want.Metrics.Kept || len(got.Metrics.History) != len(want.Metrics.History) {
		t.Errorf("metrics: resumed %+v, uninterrupted %+v", got.Metrics.Test, want.Metrics.Test)
	}
	if !reflect.DeepEqual(gotH.Splits, wantH.Splits) {
		t.Error("the resumed host half differs from the uninterrupted run's")
	}
	t.Logf("resumed after tree %d of %d; test AUC %.4f", last, len(want.Trees), got.Metrics.Test.AUC)

	// A host resuming from another tree is refused.
	if last >= 1 && cps.host[last-1] != nil {
		gc.Resume = cps.guest[last]
		_, _, gerr, herr = runPair(ctx, gt, ht, gc, HostConfig{Name: "h", Resume: cps.host[last-1]})
		if !errors.Is(herr, ErrMismatch) || !errors.Is(gerr, ErrAborted) {
			t.Errorf("resuming at different trees: guest %v, host %v", gerr, herr)
		}
	}
}
