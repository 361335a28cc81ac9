package psinode_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// TestConsentFilteredInput: with a purpose, only the guest's identifiers
// with a usable consent for (host, purpose) take part.
func TestConsentFilteredInput(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{}, nodeOptions{})
	ctx := context.Background()
	mem := cache.NewMemory(cache.MemoryOptions{})
	defer mem.Close()
	cs, err := consentnode.New(ctx, node.ConsentDeps(nodetest.Env(g.node.Resources(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	const purpose = "credit_risk_assessment"
	if _, err := cs.Domain.CreatePurpose(ctx, consent.PurposeRequest{ID: purpose, PolicyText: "v1", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	guestIDs := randomIDs("ID", 60)
	grant := func(subject, party string) consent.Consent {
		c, _, err := cs.Domain.Grant(ctx, consent.GrantRequest{Subject: subject, Purpose: purpose, Party: party, Categories: []string{"telecom.usage"},
			PolicyVersion: 1, Actor: "test", Evidence: consent.Evidence{Channel: "web", Collector: "test", CollectedAt: time.Now().Add(-time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	consented := map[string]bool{}
	for i, id := range guestIDs {
		switch {
		case i%2 == 0:
			grant(strings.ToUpper(id), "partner") // consent normalises case
			consented[id] = true
		case i%5 == 1:
			grant(id, "telco") // another host: no consent for partner
		case i%7 == 3:
			c := grant(id, "partner")
			if _, err := cs.Domain.Withdraw(ctx, c.ID, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	hostIDs := append(slices.Clone(guestIDs[10:50]), randomIDs("h", 20)...)
	hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", hostIDs), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", guestIDs), Column: "id"}})
	end := g.wait(t, gj.ID, time.Minute)
	var want []string
	var wantRows []string
	hs := map[string]bool{}
	for _, id := range hostIDs {
		hs[id] = true
	}
	for i, id := range guestIDs {
		if consented[id] && hs[id] {
			want = append(want, id)
			wantRows = append(wantRows, fmt.Sprint(i))
		}
	}
	if end.Status != "done" || *end.IntersectionSize != int64(len(want)) || end.Excluded != int64(len(guestIDs)-len(consented)) || end.LocalCount != int64(len(consented)) {
		t.Fatalf("%s (%s): size %v want %d, excluded %d, local %d", end.Status, end.Error, end.IntersectionSize, len(want), end.Excluded, end.LocalCount)
	}
	rows, ids := g.resultCSV(t, gj.ID)
	if !slices.Equal(ids, want) || !slices.Equal(rows, wantRows) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if j := h.wait(t, hj.ID, 5*time.Second); j.Status != "done" || j.PeerCount != int64(len(consented)) {
		t.Errorf("the host saw %d guest elements (%s)", j.PeerCount, j.Status)
	}
	// A purpose the host job does not serve is refused.
	h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Purpose: "marketing_offers", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h2.csv", hostIDs), Column: "id"}})
	gj2 := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g2.csv", guestIDs), Column: "id"}})
	if end := g.wait(t, gj2.ID, time.Minute); end.Status != "failed" || !strings.Contains(end.Error, "no pending host job") {
		t.Errorf("purpose mismatch: %s %q", end.Status, end.Error)
	}
}

// TestTableInput reads both sides' identifiers from tables of their
// databases, with phone-number normalisation.
func TestTableInput(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{}, nodeOptions{})
	ctx := context.Background()
	for _, n := range []*testNode{g, h} {
		if _, err := n.node.DB().ExecContext(ctx, `CREATE TABLE customers (phone TEXT, name TEXT)`); err != nil {
			t.Fatal(err)
		}
	}
	insert := func(n *testNode, phones ...string) {
		for _, p := range phones {
			if _, err := n.node.DB().ExecContext(ctx, n.node.DB().Rebind(`INSERT INTO customers (phone, name) VALUES (?, 'x')`), p); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(g, "138 0013 8000", "+86 139-0013-9000", "0086 13700137000", "not a phone", "13600136000")
	insert(h, "+8613800138000", "13900139000", "8613700137000", "+8613500135000")
	norm := &psiapi.NormalizationBody{Trim: true, Phone: "86"}
	h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Normalization: norm, Input: psiapi.InputBody{Kind: "table", Table: "customers", Column: "phone"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Normalization: norm, Input: psiapi.InputBody{Kind: "table", Table: "customers", Column: "phone"}})
	end := g.wait(t, gj.ID, time.Minute)
	if end.Status != "done" || end.Invalid != 1 {
		t.Fatalf("%s (%s), invalid %d", end.Status, end.Error, end.Invalid)
	}
	_, ids := g.resultCSV(t, gj.ID)
	slices.Sort(ids)
	// "8613700137000" without + or 00 is read as a national number.
	if want := []string{"+8613800138000", "+8613900139000"}; !slices.Equal(ids, want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if status, data := g.api(t, "POST", "/psi/v1/jobs", psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "table", Table: "api_tokens", Column: "name"}}, nil); status != 400 {
		t.Errorf("a fedrisk table as input: %d %s", status, data)
	}
}

// TestGuestNodeRestart stops the guest's node in the middle of a job and
// starts it again on the same data: the job resumes on its own. The core's
// keys have no encoding, so the restarted runner opens a new session
// (superseding the old one) and still gets the exact result.
func TestGuestNodeRestart(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	guestOpts := nodeOptions{opts: psijob.Options{BatchSize: 20, Window: 1}, delay: 15 * time.Millisecond}
	g, h := f.pair(t, guestOpts, nodeOptions{})
	guestIDs := append(randomIDs("g", 200), randomIDs("c", 150)...)
	hostIDs := append(slices.Clone(guestIDs[200:]), randomIDs("h", 100)...)
	hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", hostIDs), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", guestIDs), Column: "id"}})
	for {
		var j psiapi.JobBody
		g.api(t, "GET", "/psi/v1/jobs/"+gj.ID, nil, &j)
		if j.Progress.DoneItems >= 60 {
			break
		}
		if psijob.Status(j.Status).Final() {
			t.Fatalf("finished before the restart: %+v", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.Open(context.Background(), "", g.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	mid, err := sqlpsi.New(db).GetJob(context.Background(), gj.ID)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if mid.Status != psijob.StatusRunning || !mid.LeaseUntil.IsZero() {
		t.Fatalf("after a graceful stop: %s, lease %v", mid.Status, mid.LeaseUntil)
	}
	guestOpts.data = g.cfg.DataDir
	guestOpts.peers = []config.Peer{{Name: "partner", URL: h.url}}
	guestOpts.role = "guest"
	g2 := f.start(t, "bank", guestOpts)
	end := g2.wait(t, gj.ID, time.Minute)
	if end.Status != "done" {
		t.Fatalf("%s: %s", end.Status, end.Error)
	}
	wantRows, wantIDs := reference(trim, guestIDs, hostIDs)
	rows, ids := g2.resultCSV(t, gj.ID)
	if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
		t.Errorf("result after restart: %d rows, want %d", len(rows), len(wantRows))
	}
	if j := h.wait(t, hj.ID, 5*time.Second); j.Status != "done" {
		t.Errorf("host job %s %s", j.Status, j.Error)
	}
}

// TestHostNodeRestart stops the host's node in the middle of a job and
// starts it again on the same data and port within the guest's peer
// deadline: the host cannot restore the session (keys have no encoding),
// the guest opens a new one on the same host job and the result is exact.
func TestHostNodeRestart(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 20, Window: 1, PeerDeadline: 20 * time.Second, CallTimeout: 2 * time.Second}, delay: 15 * time.Millisecond}, nodeOptions{})
	guestIDs := append(randomIDs("g", 200), randomIDs("c", 150)...)
	hostIDs := append(slices.Clone(guestIDs[200:]), randomIDs("h", 100)...)
	hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", hostIDs), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", guestIDs), Column: "id"}})
	for {
		var j psiapi.JobBody
		g.api(t, "GET", "/psi/v1/jobs/"+gj.ID, nil, &j)
		if j.Progress.DoneItems >= 60 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h2 := f.start(t, "partner", nodeOptions{role: "host", data: h.cfg.DataDir, addr: strings.TrimPrefix(h.url, "https://"),
		peers: []config.Peer{{Name: "bank", URL: "https://127.0.0.1:1"}}})
	h2.dir = h.dir
	end := g.wait(t, gj.ID, time.Minute)
	if end.Status != "done" {
		t.Fatalf("%s: %s", end.Status, end.Error)
	}
	wantRows, _ := reference(trim, guestIDs, hostIDs)
	rows, _ := g.resultCSV(t, gj.ID)
	if !slices.Equal(rows, wantRows) {
		t.Errorf("result after the host's restart: %d rows, want %d", len(rows), len(wantRows))
	}
	if j := h2.wait(t, hj.ID, 5*time.Second); j.Status != "done" {
		t.Errorf("host job %s %s", j.Status, j.Error)
	}
}
