// Package psijobtest is the conformance suite of psijob.Store: every
// backend runs the same cases (sqlpsi on SQLite always and on PostgreSQL
// when FEDRISK_TEST_POSTGRES_URL is set).
package psijobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
)

// Run runs the suite; newStore returns an empty store for each case.
func Run(t *testing.T, newStore func(t *testing.T) psijob.Store) {
	t.Run("jobs", func(t *testing.T) { testJobs(t, newStore(t)) })
	t.Run("claim", func(t *testing.T) { testClaim(t, newStore(t)) })
	t.Run("concurrent updates", func(t *testing.T) { testConcurrentUpdates(t, newStore(t)) })
	t.Run("checkpoints", func(t *testing.T) { testCheckpoints(t, newStore(t)) })
	t.Run("results", func(t *testing.T) { testResults(t, newStore(t)) })
	t.Run("sessions", func(t *testing.T) { testSessions(t, newStore(t)) })
	t.Run("batches", func(t *testing.T) { testBatches(t, newStore(t)) })
	t.Run("both-learn mode", func(t *testing.T) { testBothMode(t, newStore(t)) })
	t.Run("reveals", func(t *testing.T) { testReveals(t, newStore(t)) })
}

var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// NewJob returns a valid job for tests.
func NewJob(id string, role psijob.Role, created time.Time) psijob.Job {
	return psijob.Job{ID: id, Role: role, Peer: psijob.PeerRef{Party: "partner", URL: "https://partner.example:7001"},
		Status: psijob.StatusPending, Mode: psijob.ModeIntersection, Purpose: "credit_risk_assessment",
		Input:         psijob.Input{Kind: psijob.InputCSV, Path: "/data/ids.csv", Column: "id"},
		Normalization: psi.Normalization{Trim: true, CaseFold: true, Phone: "86"}, BatchSize: 4096,
		CreatedBy: "local:loopback", CreatedAt: created, UpdatedAt: created}
}

func jobID(i int) string { return fmt.Sprintf("psi_%020d", i) }

func testJobs(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if _, err := s.GetJob(ctx, jobID(1)); !errors.Is(err, psijob.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	for i := 1; i <= 3; i++ {
		role := psijob.RoleGuest
		if i == 2 {
			role = psijob.RoleHost
		}
		if err := s.CreateJob(ctx, NewJob(jobID(i), role, base.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleGuest, base)); err == nil {
		t.Error("a duplicate id was accepted")
	}
	got, err := s.GetJob(ctx, jobID(1))
	if err != nil {
		t.Fatal(err)
	}
	want := NewJob(jobID(1), psijob.RoleGuest, base.Add(time.Second))
	if got.Peer != want.Peer || got.Input != want.Input || got.Normalization != want.Normalization || got.Purpose != want.Purpose ||
		got.Mode != want.Mode || got.BatchSize != 4096 || !got.CreatedAt.Equal(want.CreatedAt) || got.IntersectionSize != nil ||
		!got.StartedAt.IsZero() || got.KeyEnc != nil {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	list, err := s.ListJobs(ctx, psijob.JobFilter{})
	if err != nil || len(list) != 3 || list[0].ID != jobID(3) || list[2].ID != jobID(1) {
		t.Fatalf("list newest first: %v %v", ids(list), err)
	}
	list, _ = s.ListJobs(ctx, psijob.JobFilter{Role: psijob.RoleGuest, Limit: 1})
	if len(list) != 1 || list[0].ID != jobID(3) {
		t.Errorf("filter by role with limit: %v", ids(list))
	}
	size := int64(42)
	upd, err := s.UpdateJob(ctx, jobID(1), func(j *psijob.Job) error {
		j.Status, j.IntersectionSize, j.Rate, j.KeyEnc, j.InputDigest = psijob.StatusDone, &size, 12.5, []byte{1, 2}, []byte{3}
		j.StartedAt, j.FinishedAt, j.Session, j.TagLen = base, base.Add(time.Minute), "0123456789abcdef0123456789abcdef", 9
		return nil
	})
	if err != nil || upd.Status != psijob.StatusDone {
		t.Fatal(err)
	}
	got, _ = s.GetJob(ctx, jobID(1))
	if got.Status != psijob.StatusDone || got.IntersectionSize == nil || *got.IntersectionSize != 42 || got.Rate != 12.5 ||
		!bytes.Equal(got.KeyEnc, []byte{1, 2}) || !got.FinishedAt.Equal(base.Add(time.Minute)) || got.TagLen != 9 {
		t.Errorf("after update: %+v", got)
	}
	list, _ = s.ListJobs(ctx, psijob.JobFilter{Status: []psijob.Status{psijob.StatusPending, psijob.StatusRunning}})
	if len(list) != 2 {
		t.Errorf("filter by status: %v", ids(list))
	}
	boom := errors.New("boom")
	if _, err := s.UpdateJob(ctx, jobID(2), func(j *psijob.Job) error { j.Status = psijob.StatusFailed; return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
	if got, _ := s.GetJob(ctx, jobID(2)); got.Status != psijob.StatusPending {
		t.Error("a failed callback changed the job")
	}
	if _, err := s.UpdateJob(ctx, jobID(9), func(*psijob.Job) error { return nil }); !errors.Is(err, psijob.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
}

func ids(js []psijob.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func testClaim(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleGuest, base)); err != nil {
		t.Fatal(err)
	}
	j, err := s.ClaimJob(ctx, jobID(1), "a", base, base.Add(30*time.Second))
	if err != nil || j.Status != psijob.StatusRunning || j.Owner != "a" || !j.StartedAt.Equal(base) {
		t.Fatalf("claim pending: %+v %v", j, err)
	}
	if _, err := s.ClaimJob(ctx, jobID(1), "b", base.Add(time.Second), base.Add(time.Minute)); !errors.Is(err, psijob.ErrNotClaimable) {
		t.Errorf("claim of a leased job: %v", err)
	}
	if _, err := s.ClaimJob(ctx, jobID(1), "a", base.Add(time.Second), base.Add(time.Minute)); err != nil {
		t.Errorf("the owner re-claims: %v", err)
	}
	j, err = s.ClaimJob(ctx, jobID(1), "b", base.Add(2*time.Minute), base.Add(3*time.Minute))
	if err != nil || j.Owner != "b" || !j.StartedAt.Equal(base) {
		t.Errorf("claim after the lease expired: %+v %v", j, err)
	}
	s.UpdateJob(ctx, jobID(1), func(j *psijob.Job) error { j.Status = psijob.StatusCancelled; return nil })
	if _, err := s.ClaimJob(ctx, jobID(1), "b", base.Add(time.Hour), base.Add(2*time.Hour)); !errors.Is(err, psijob.ErrNotClaimable) {
		t.Errorf("claim of a cancelled job: %v", err)
	}
}

func testConcurrentUpdates(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleGuest, base)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if _, err := s.UpdateJob(ctx, jobID(1), func(j *psijob.Job) error { j.DoneItems++; return nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if j, _ := s.GetJob(ctx, jobID(1)); j.DoneItems != 40 {
		t.Errorf("lost updates: %d of 40", j.DoneItems)
	}
}

func testCheckpoints(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if err := s.CreateJob(ctx, NewJob(jobID(i), psijob.RoleGuest, base)); err != nil {
			t.Fatal(err)
		}
	}
	for b := 2; b >= 0; b-- {
		c := psijob.Checkpoint{JobID: jobID(1), Phase: psijob.PhaseGuestTags, Batch: b, Session: "s1", Data: []byte{byte(b)}, CreatedAt: base}
		if err := s.SaveCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	s.SaveCheckpoint(ctx, psijob.Checkpoint{JobID: jobID(1), Phase: psijob.PhaseGuestTags, Batch: 1, Session: "s2", Data: []byte{9}, CreatedAt: base.Add(time.Second)})
	s.SaveCheckpoint(ctx, psijob.Checkpoint{JobID: jobID(1), Phase: psijob.PhaseHostMatches, Batch: 0, Session: "s1", Data: []byte{}, CreatedAt: base})
	s.SaveCheckpoint(ctx, psijob.Checkpoint{JobID: jobID(2), Phase: psijob.PhaseGuestTags, Batch: 0, Session: "x", Data: []byte{7}, CreatedAt: base})
	cps, err := s.Checkpoints(ctx, jobID(1), psijob.PhaseGuestTags)
	if err != nil || len(cps) != 3 {
		t.Fatalf("checkpoints: %v %v", cps, err)
	}
	for i, c := range cps {
		if c.Batch != i {
			t.Errorf("order: %v", cps)
		}
	}
	if cps[1].Session != "s2" || !bytes.Equal(cps[1].Data, []byte{9}) || !cps[1].CreatedAt.Equal(base.Add(time.Second)) {
		t.Errorf("a saved checkpoint is replaced: %+v", cps[1])
	}
	if cps, _ := s.Checkpoints(ctx, jobID(1), psijob.PhaseHostMatches); len(cps) != 1 || cps[0].Data == nil || len(cps[0].Data) != 0 {
		t.Errorf("empty data: %+v", cps)
	}
	if err := s.DeleteCheckpoints(ctx, jobID(1)); err != nil {
		t.Fatal(err)
	}
	if cps, _ := s.Checkpoints(ctx, jobID(1), psijob.PhaseGuestTags); len(cps) != 0 {
		t.Errorf("after delete: %v", cps)
	}
	if cps, _ := s.Checkpoints(ctx, jobID(2), psijob.PhaseGuestTags); len(cps) != 1 {
		t.Errorf("another job's checkpoints were deleted")
	}
}

func testResults(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleGuest, base)); err != nil {
		t.Fatal(err)
	}
	count := func() (n int, rows [][]byte) {
		s.ResultChunks(ctx, jobID(1), func(c psijob.ResultChunk) error {
			n++
			rows = append(rows, c.Rows)
			return nil
		})
		return
	}
	if n, _ := count(); n != 0 {
		t.Errorf("no result yet: %d chunks", n)
	}
	chunks := []psijob.ResultChunk{{Chunk: 0, Rows: []byte{1, 2}, IDsEnc: []byte("a")}, {Chunk: 1, Rows: []byte{3}, IDsEnc: []byte("b")}}
	if err := s.SaveResult(ctx, jobID(1), chunks); err != nil {
		t.Fatal(err)
	}
	if n, rows := count(); n != 2 || !bytes.Equal(rows[1], []byte{3}) {
		t.Errorf("result: %d %v", n, rows)
	}
	if err := s.SaveResult(ctx, jobID(1), chunks[:1]); err != nil {
		t.Fatal(err)
	}
	if n, _ := count(); n != 1 {
		t.Errorf("SaveResult replaces: %d chunks", n)
	}
	stop := errors.New("stop")
	if err := s.ResultChunks(ctx, jobID(1), func(psijob.ResultChunk) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("callback error: %v", err)
	}
	if err := s.SaveResult(ctx, jobID(1), []psijob.ResultChunk{{Chunk: 0, Rows: []byte{}}}); err != nil {
		t.Fatal(err)
	}
	s.ResultChunks(ctx, jobID(1), func(c psijob.ResultChunk) error {
		if c.IDsEnc != nil {
			t.Errorf("cardinality chunk has identifiers")
		}
		return nil
	})
}

// NewSession returns a valid session for tests.
func NewSession(id, jobID string, seen time.Time) psijob.Session {
	return psijob.Session{ID: id, JobID: jobID, Peer: "bank", Status: psijob.SessionOpen, Mode: psijob.ModeIntersection,
		GuestCount: 100, HostCount: 200, BatchSize: 64, TagLen: 8, Fingerprint: "fp", InputDigest: []byte{1},
		KeyID: "k", KeyEnc: []byte{2}, PermEnc: []byte{3}, CreatedAt: seen, LastSeen: seen}
}

func sid(i int) string { return fmt.Sprintf("%032x", i) }

func testSessions(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleHost, base)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, sid(1)); !errors.Is(err, psijob.ErrSessionNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if err := s.CreateSession(ctx, NewSession(sid(i), jobID(1), base.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetSession(ctx, sid(1))
	want := NewSession(sid(1), jobID(1), base.Add(time.Minute))
	if err != nil || got.Peer != "bank" || got.GuestCount != 100 || got.HostCount != 200 || got.TagLen != 8 ||
		!bytes.Equal(got.PermEnc, want.PermEnc) || !got.LastSeen.Equal(want.LastSeen) || got.Status != psijob.SessionOpen {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	s.UpdateSession(ctx, sid(2), func(x *psijob.Session) error {
		x.Status, x.Code, x.Reason, x.KeyEnc, x.PermEnc = psijob.SessionAborted, "cancelled", "why", nil, nil
		return nil
	})
	got, _ = s.GetSession(ctx, sid(2))
	if got.Status != psijob.SessionAborted || got.Code != "cancelled" || got.Reason != "why" || got.KeyEnc != nil {
		t.Errorf("after update: %+v", got)
	}
	idle, err := s.IdleSessions(ctx, base.Add(150*time.Second))
	if err != nil || len(idle) != 1 || idle[0].ID != sid(1) {
		t.Errorf("idle open sessions: %v %v", idle, err)
	}
	if _, err := s.UpdateSession(ctx, sid(9), func(*psijob.Session) error { return nil }); !errors.Is(err, psijob.ErrSessionNotFound) {
		t.Errorf("update unknown: %v", err)
	}
}

func testBatches(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleHost, base)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if err := s.CreateSession(ctx, NewSession(sid(i), jobID(1), base)); err != nil {
			t.Fatal(err)
		}
	}
	b := psijob.SessionBatch{Session: sid(1), Batch: 1, Digest: []byte("d1"), Tags: []byte("t1")}
	got, existed, err := s.RecordBatch(ctx, b)
	if err != nil || existed || got.Receipts != 1 {
		t.Fatalf("first: %+v %v %v", got, existed, err)
	}
	other := b
	other.Digest = []byte("other")
	got, existed, err = s.RecordBatch(ctx, other)
	if err != nil || !existed || !bytes.Equal(got.Digest, []byte("d1")) || got.Receipts != 2 || !bytes.Equal(got.Tags, []byte("t1")) {
		t.Fatalf("again: %+v %v %v", got, existed, err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, _, err := s.RecordBatch(ctx, psijob.SessionBatch{Session: sid(1), Batch: 0, Digest: []byte("d0")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.RecordBatch(ctx, psijob.SessionBatch{Session: sid(2), Batch: 0, Digest: []byte("x")})
	list, err := s.SessionBatches(ctx, sid(1))
	if err != nil || len(list) != 2 || list[0].Batch != 0 || list[0].Receipts != 6 || list[1].Receipts != 2 || list[0].Tags != nil {
		t.Fatalf("batches: %+v %v", list, err)
	}
	if err := s.DeleteSessionBatches(ctx, sid(1)); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.SessionBatches(ctx, sid(1)); len(list) != 0 {
		t.Errorf("after delete: %v", list)
	}
	if list, _ := s.SessionBatches(ctx, sid(2)); len(list) != 1 {
		t.Errorf("another session's batches were deleted")
	}
}

func testBothMode(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	for i, mode := range []psijob.Mode{psijob.ModeIntersection, psijob.ModeCardinality, psijob.ModeBoth} {
		j := NewJob(jobID(i+1), psijob.RoleHost, base)
		j.Mode = mode
		if err := s.CreateJob(ctx, j); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		got, err := s.GetJob(ctx, j.ID)
		if err != nil || got.Mode != mode {
			t.Errorf("mode %s read back as %s (%v)", mode, got.Mode, err)
		}
	}
	size := int64(3)
	got, err := s.UpdateJob(ctx, jobID(3), func(j *psijob.Job) error {
		j.Status, j.IntersectionSize, j.KeyID = psijob.StatusDone, &size, "k1"
		return nil
	})
	if err != nil || got.Mode != psijob.ModeBoth {
		t.Fatalf("update keeps the mode: %s %v", got.Mode, err)
	}
	if got, _ := s.GetJob(ctx, jobID(3)); got.Mode != psijob.ModeBoth || got.KeyID != "k1" || *got.IntersectionSize != 3 {
		t.Errorf("after update: %+v", got)
	}
	list, err := s.ListJobs(ctx, psijob.JobFilter{Role: psijob.RoleHost})
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %v", ids(list), err)
	}
	for _, j := range list {
		if j.ID == jobID(3) && j.Mode != psijob.ModeBoth {
			t.Errorf("listed as %s", j.Mode)
		}
	}
	sess := NewSession(sid(1), jobID(3), base)
	sess.Mode = psijob.ModeBoth
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, sid(1)); got.Mode != psijob.ModeBoth {
		t.Errorf("session mode %s", got.Mode)
	}
}

func testReveals(t *testing.T, s psijob.Store) {
	ctx := context.Background()
	if err := s.CreateJob(ctx, NewJob(jobID(1), psijob.RoleHost, base)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if err := s.CreateSession(ctx, NewSession(sid(i), jobID(1), base)); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := s.SessionReveals(ctx, sid(1)); err != nil || len(list) != 0 {
		t.Fatalf("no reveals yet: %v %v", list, err)
	}
	r := psijob.SessionReveal{Session: sid(1), Batch: 1, Positions: []int{5, 70000, 1 << 30}}
	got, existed, err := s.RecordReveal(ctx, r)
	if err != nil || existed || got.Receipts != 1 {
		t.Fatalf("first: %+v %v %v", got, existed, err)
	}
	other := r
	other.Positions = []int{6}
	got, existed, err = s.RecordReveal(ctx, other)
	if err != nil || !existed || !slices.Equal(got.Positions, r.Positions) || got.Receipts != 2 {
		t.Fatalf("again: %+v %v %v", got, existed, err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, _, err := s.RecordReveal(ctx, psijob.SessionReveal{Session: sid(1), Batch: 0, Positions: []int{0, 1}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.RecordReveal(ctx, psijob.SessionReveal{Session: sid(2), Batch: 0, Positions: []int{9}})
	s.RecordBatch(ctx, psijob.SessionBatch{Session: sid(1), Batch: 0, Digest: []byte("d")})
	list, err := s.SessionReveals(ctx, sid(1))
	if err != nil || len(list) != 2 || list[0].Batch != 0 || list[0].Receipts != 6 || !slices.Equal(list[0].Positions, []int{0, 1}) ||
		list[1].Receipts != 2 || !slices.Equal(list[1].Positions, r.Positions) {
		t.Fatalf("reveals: %+v %v", list, err)
	}
	if err := s.DeleteSessionBatches(ctx, sid(1)); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.SessionReveals(ctx, sid(1)); len(list) != 0 {
		t.Errorf("reveals after delete: %v", list)
	}
	if list, _ := s.SessionBatches(ctx, sid(1)); len(list) != 0 {
		t.Errorf("batches after delete: %v", list)
	}
	if list, _ := s.SessionReveals(ctx, sid(2)); len(list) != 1 {
		t.Errorf("another session's reveals were deleted")
	}
}
