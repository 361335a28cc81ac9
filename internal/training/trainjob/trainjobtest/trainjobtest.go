// Package trainjobtest is the conformance suite of trainjob.Store: every
// backend (the in-memory MemStore, sqltrainjob on SQLite and PostgreSQL) runs
// the same cases.
package trainjobtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

// Run runs the suite; newStore returns an empty store.
func Run(t *testing.T, newStore func(t *testing.T) trainjob.Store) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, newStore(t)) })
	t.Run("ListAndFilter", func(t *testing.T) { listAndFilter(t, newStore(t)) })
	t.Run("Update", func(t *testing.T) { update(t, newStore(t)) })
	t.Run("Checkpoints", func(t *testing.T) { checkpoints(t, newStore(t)) })
}

var base = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func id(n int) string { return fmt.Sprintf("tj-%024x", n) }

// Sample returns a job with every field set.
func Sample(n int) trainjob.Job {
	test := lr.Metrics{Rows: 100, AUC: 0.75, KS: 0.4, LogLoss: 0.5}
	return trainjob.Job{ID: id(n), Role: trainjob.RoleGuest, Algo: trainjob.AlgoHeteroLR, Peer: "telecom", PeerJob: id(1000 + n),
		File: "g.csv", PSIJob: "psi_0123456789abcdef0123", HostFile: "h.csv", ModelID: "credit-risk", Version: "3",
		Train: lr.DefaultConfig(), Epochs: 20, Rows: 30000, Features: 13, Status: trainjob.StatusSucceeded, Error: "",
		CreatedBy: "token:ops", Created: base.Add(time.Duration(n) * time.Second), Started: base.Add(time.Minute),
		Finished: base.Add(2 * time.Minute), Updated: base.Add(2 * time.Minute),
		EpochStats: []trainjob.EpochStat{{Epoch: 0, Seconds: 0.5, Loss: 0.6, AUC: 0.7, KS: 0.3, Best: true}, {Epoch: 1, Seconds: 0.25, Loss: 0.59, AUC: 0.71, KS: 0.31}},
		Test:       &test, ModelPath: "/data/models/x.json", BytesSent: 1 << 40, BytesReceived: 12345}
}

func equal(t *testing.T, got, want trainjob.Job) {
	t.Helper()
	if got.Test == nil || want.Test == nil {
		if (got.Test == nil) != (want.Test == nil) {
			t.Fatalf("test metrics %v, want %v", got.Test, want.Test)
		}
	} else if *got.Test != *want.Test {
		t.Fatalf("test metrics %+v, want %+v", *got.Test, *want.Test)
	}
	g, w := got, want
	g.Test, w.Test = nil, nil
	if !slices.Equal(g.EpochStats, w.EpochStats) {
		t.Fatalf("epoch stats %+v, want %+v", g.EpochStats, w.EpochStats)
	}
	g.EpochStats, w.EpochStats = nil, nil
	for _, p := range []*trainjob.Job{&g, &w} {
		for _, tm := range []*time.Time{&p.Created, &p.Started, &p.Finished, &p.Updated} {
			*tm = tm.UTC()
		}
	}
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Fatalf("job\n got %+v\nwant %+v", g, w)
	}
}

func roundTrip(t *testing.T, s trainjob.Store) {
	ctx := context.Background()
	full := Sample(1)
	if err := s.CreateJob(ctx, full); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, got, full)
	// A minimal host job: zero times, no stats, no test, no params.
	small := trainjob.Job{ID: id(2), Role: trainjob.RoleHost, Algo: trainjob.AlgoHeteroLR, Peer: "bank", File: "h.csv",
		Status: trainjob.StatusWaiting, Created: base, Updated: base}
	if err := s.CreateJob(ctx, small); err != nil {
		t.Fatal(err)
	}
	if got, err = s.GetJob(ctx, small.ID); err != nil {
		t.Fatal(err)
	}
	equal(t, got, small)
	if err := s.CreateJob(ctx, small); !errors.Is(err, trainjob.ErrExists) {
		t.Errorf("duplicate id: %v, want ErrExists", err)
	}
	if _, err := s.GetJob(ctx, id(99)); !errors.Is(err, trainjob.ErrNotFound) {
		t.Errorf("missing job: %v, want ErrNotFound", err)
	}
}

func listAndFilter(t *testing.T, s trainjob.Store) {
	ctx := context.Background()
	for n := 1; n <= 5; n++ {
		j := Sample(n)
		if n%2 == 0 {
			j.Role, j.Status = trainjob.RoleHost, trainjob.StatusRunning
		}
		if err := s.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(jobs []trainjob.Job) []string {
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	all, err := s.ListJobs(ctx, trainjob.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{id(5), id(4), id(3), id(2), id(1)}; !slices.Equal(ids(all), want) {
		t.Errorf("all: %v, want newest first %v", ids(all), want)
	}
	hosts, _ := s.ListJobs(ctx, trainjob.Filter{Role: trainjob.RoleHost})
	if want := []string{id(4), id(2)}; !slices.Equal(ids(hosts), want) {
		t.Errorf("hosts: %v, want %v", ids(hosts), want)
	}
	st, _ := s.ListJobs(ctx, trainjob.Filter{Status: []string{trainjob.StatusSucceeded, trainjob.StatusFailed}, Limit: 2})
	if want := []string{id(5), id(3)}; !slices.Equal(ids(st), want) {
		t.Errorf("succeeded or failed, limit 2: %v, want %v", ids(st), want)
	}
	none, _ := s.ListJobs(ctx, trainjob.Filter{Role: trainjob.RoleHost, Status: []string{trainjob.StatusCancelled}})
	if len(none) != 0 {
		t.Errorf("no match: %v", ids(none))
	}
}

func update(t *testing.T, s trainjob.Store) {
	ctx := context.Background()
	j := Sample(1)
	j.Status, j.Test, j.EpochStats = trainjob.StatusRunning, nil, nil
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateJob(ctx, j.ID, func(v *trainjob.Job) error {
		v.ID = "ignored"
		v.EpochStats = append(v.EpochStats, trainjob.EpochStat{Epoch: 0, AUC: 0.7})
		v.Status, v.Error = trainjob.StatusFailed, "boom"
		v.BytesSent += 10
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != j.ID || got.Status != trainjob.StatusFailed || len(got.EpochStats) != 1 {
		t.Fatalf("updated %+v", got)
	}
	read, _ := s.GetJob(ctx, j.ID)
	equal(t, read, got)
	stop := errors.New("stop")
	if _, err := s.UpdateJob(ctx, j.ID, func(v *trainjob.Job) error { v.Error = "changed"; return stop }); !errors.Is(err, stop) {
		t.Errorf("fn error: %v", err)
	}
	if read, _ = s.GetJob(ctx, j.ID); read.Error != "boom" {
		t.Errorf("an aborted update changed the job: %q", read.Error)
	}
	if _, err := s.UpdateJob(ctx, id(99), func(*trainjob.Job) error { return nil }); !errors.Is(err, trainjob.ErrNotFound) {
		t.Errorf("missing job: %v", err)
	}
}

func checkpoints(t *testing.T, s trainjob.Store) {
	ctx := context.Background()
	j := Sample(1)
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	other := Sample(2)
	if err := s.CreateJob(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, trainjob.Checkpoint{JobID: id(99), Epoch: 0, State: []byte("x"), CreatedAt: base}); !errors.Is(err, trainjob.ErrNotFound) {
		t.Errorf("checkpoint of a missing job: %v", err)
	}
	for _, e := range []int{2, 0, 1} {
		if err := s.SaveCheckpoint(ctx, trainjob.Checkpoint{JobID: j.ID, Epoch: e, State: []byte{byte(e), 0, 0xff}, CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveCheckpoint(ctx, trainjob.Checkpoint{JobID: other.ID, Epoch: 7, State: []byte("o"), CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	// Replace epoch 1.
	if err := s.SaveCheckpoint(ctx, trainjob.Checkpoint{JobID: j.ID, Epoch: 1, State: []byte("new"), CreatedAt: base.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	epochs, err := s.CheckpointEpochs(ctx, j.ID)
	if err != nil || !slices.Equal(epochs, []int{0, 1, 2}) {
		t.Fatalf("epochs %v %v", epochs, err)
	}
	c, err := s.LoadCheckpoint(ctx, j.ID, 1)
	if err != nil || string(c.State) != "new" || c.Epoch != 1 || c.JobID != j.ID || !c.CreatedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("checkpoint %+v %v", c, err)
	}
	if c, _ = s.LoadCheckpoint(ctx, j.ID, 2); !slices.Equal(c.State, []byte{2, 0, 0xff}) {
		t.Errorf("binary state %v", c.State)
	}
	if _, err := s.LoadCheckpoint(ctx, j.ID, 5); !errors.Is(err, trainjob.ErrNotFound) {
		t.Errorf("missing checkpoint: %v", err)
	}
	if err := s.DeleteCheckpoints(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if epochs, _ = s.CheckpointEpochs(ctx, j.ID); len(epochs) != 0 {
		t.Errorf("after delete: %v", epochs)
	}
	if epochs, _ = s.CheckpointEpochs(ctx, other.ID); !slices.Equal(epochs, []int{7}) {
		t.Errorf("another job's checkpoints: %v", epochs)
	}
}
