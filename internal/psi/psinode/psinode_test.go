package psinode_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
)

var trim = psi.Normalization{Trim: true}

// run creates the host's job, then the guest's, and waits for the guest's.
func run(t *testing.T, g, h *testNode, guestIDs, hostIDs []string, mode string, norm *psiapi.NormalizationBody) (gj, hj psiapi.JobBody) {
	t.Helper()
	hostJob := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Mode: mode, Normalization: norm,
		Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "host.csv", hostIDs), Column: "id"}})
	if hostJob.Role != "host" || hostJob.Status != "pending" {
		t.Fatalf("host job: %+v", hostJob)
	}
	guestJob := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Mode: mode, Normalization: norm,
		Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "guest.csv", guestIDs), Column: "id"}})
	gj = g.wait(t, guestJob.ID, 2*time.Minute)
	hj = h.wait(t, hostJob.ID, 10*time.Second)
	return gj, hj
}

func TestIntersectionOverMutualTLS(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 50}}, nodeOptions{})
	common := randomIDs("c", 300)
	tests := []struct {
		name        string
		guest, host []string
		mode        string
	}{
		{"partial overlap", append(randomIDs("g", 200), common...), append(slices.Clone(common[:170]), randomIDs("h", 260)...), ""},
		{"duplicates", append(append([]string{" d1", "d1", "d1 ", "d2"}, common[:40]...), common[:40]...), append([]string{"d1", "d1"}, common[20:90]...), ""},
		{"unicode", []string{"张三-110101199003077777", "Ölçü", "😀", "ascii", "ﬁ"}, []string{"😀", "张三-110101199003077777", "OLÇÜ", "ﬁ"}, ""},
		{"empty guest", nil, common, ""},
		{"empty host", common, nil, ""},
		{"both empty", nil, nil, ""},
		{"disjoint", randomIDs("a", 120), randomIDs("b", 80), ""},
		{"cardinality", append(randomIDs("g", 90), common[:110]...), append(slices.Clone(common[50:200]), randomIDs("h", 30)...), "cardinality"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gj, hj := run(t, g, h, tt.guest, tt.host, tt.mode, nil)
			wantRows, wantIDs := reference(trim, tt.guest, tt.host)
			if gj.Status != "done" || gj.IntersectionSize == nil || *gj.IntersectionSize != int64(len(wantRows)) {
				t.Fatalf("guest job %s (%s): size %v, want %d", gj.Status, gj.Error, gj.IntersectionSize, len(wantRows))
			}
			if hj.Status != "done" || hj.IntersectionSize != nil {
				t.Errorf("host job: %s %v (the host learns nothing)", hj.Status, hj.IntersectionSize)
			}
			if gj.PeerCount != hj.LocalCount || hj.PeerCount != gj.LocalCount {
				t.Errorf("set sizes: guest %d/%d host %d/%d", gj.LocalCount, gj.PeerCount, hj.LocalCount, hj.PeerCount)
			}
			if gj.Progress.Percent != 100 || gj.Progress.DoneItems != gj.Progress.TotalItems {
				t.Errorf("progress at the end: %+v", gj.Progress)
			}
			if tt.mode == "cardinality" {
				if status, data := g.api(t, "GET", "/psi/v1/jobs/"+gj.ID+"/result.csv", nil, nil); status != http.StatusConflict {
					t.Errorf("cardinality result.csv: %d %s", status, data)
				}
				return
			}
			rows, ids := g.resultCSV(t, gj.ID)
			if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
				t.Errorf("result.csv\n got %v %v\nwant %v %v", rows, ids, wantRows, wantIDs)
			}
		})
	}

	// Metrics of both roles, and the cached result.
	if n := testutil.CollectAndCount(g.reg, "psi_intersection_duration_seconds"); n == 0 {
		t.Error("no duration histogram")
	}
	for _, c := range []struct {
		n              *testNode
		role, dir, met string
	}{{g, "guest", "sent", "psi_items_total"}, {g, "guest", "received", "psi_bytes_total"}, {h, "host", "received", "psi_items_total"}, {h, "host", "sent", "psi_bytes_total"}} {
		if v := counter(t, c.n, c.met, c.role, c.dir); v <= 0 {
			t.Errorf("%s{role=%s,direction=%s} = %v", c.met, c.role, c.dir, v)
		}
	}
	if v := histCount(t, g, "guest"); v != float64(len(tests)) {
		t.Errorf("guest durations observed %v, want %d", v, len(tests))
	}
	if v := histCount(t, h, "host"); v != float64(len(tests)) {
		t.Errorf("host durations observed %v, want %d", v, len(tests))
	}
	var jobs struct{ Jobs []psiapi.JobBody }
	g.api(t, "GET", "/psi/v1/jobs?status=done", nil, &jobs)
	if len(jobs.Jobs) != len(tests) {
		t.Fatalf("listed %d done jobs", len(jobs.Jobs))
	}
	if _, ok, _ := g.node.Cache().Get(context.Background(), cache.PSIResults(), "rows:"+jobs.Jobs[len(jobs.Jobs)-1].ID); !ok {
		t.Error("the finished result is not in the psi_results cache")
	}
	resp, _ := g.client.Get(g.url + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `psi_intersection_duration_seconds_bucket{role="guest",le="600"}`) {
		t.Error("the duration histogram has no 600 s bucket")
	}
}

func counter(t *testing.T, n *testNode, name, role, dir string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["role"] == role && labels["direction"] == dir {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func histCount(t *testing.T, n *testNode, role string) float64 {
	t.Helper()
	mfs, _ := n.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "psi_intersection_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == role {
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// TestBundledData intersects the shipped UCI credit data: guest rows
// 0..20000 and host rows 10000..30000 of the hetero split.
func TestBundledData(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if raceEnabled {
		// 2×40,000 blinds under the race detector outlast the node's 10 s
		// peer-client timeout per batch; the other tests run the same
		// code under -race on smaller sets.
		t.Skip("too slow under the race detector")
	}
	guestIDs := dataIDs(t, "../../../data/default_credit_hetero_guest.csv")[:20000]
	hostIDs := dataIDs(t, "../../../data/default_credit_hetero_host.csv")[10000:30000]
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{}, nodeOptions{})
	gj, _ := run(t, g, h, guestIDs, hostIDs, "", nil)
	wantRows, wantIDs := reference(trim, guestIDs, hostIDs)
	if gj.Status != "done" || *gj.IntersectionSize != int64(len(wantRows)) {
		t.Fatalf("%s (%s): size %v, want %d", gj.Status, gj.Error, gj.IntersectionSize, len(wantRows))
	}
	rows, ids := g.resultCSV(t, gj.ID)
	if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
		t.Errorf("the exported intersection differs from the plaintext one (%d vs %d rows)", len(rows), len(wantRows))
	}
	t.Logf("guest %d, host %d, intersection %d", len(guestIDs), len(hostIDs), len(wantRows))
}

func dataIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if recs[0][0] != "id" {
		t.Fatalf("%s: first column %q", path, recs[0][0])
	}
	out := make([]string, 0, len(recs)-1)
	for _, r := range recs[1:] {
		out = append(out, r[0])
	}
	return out
}

// TestResumeAfterKill kills the guest's runner after k batches and starts
// it again: it continues from batch k and the result is exact.
func TestResumeAfterKill(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 40, Window: 1}}, nodeOptions{})
	g.svc.Jobs.Stop() // this test drives the runner itself
	guestIDs := append(randomIDs("g", 300), randomIDs("c", 200)...)
	hostIDs := append(slices.Clone(guestIDs[300:]), randomIDs("h", 150)...)
	h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", hostIDs), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", guestIDs), Column: "id"}})

	const k = 5
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := g.svc.Runner.Run(ctx, gj.ID); done <- err }()
	for {
		cps, err := g.svc.Store.Checkpoints(context.Background(), gj.ID, psijob.PhaseGuestTags)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) >= k {
			kill()
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("killed run: %v", err)
	}
	cps, _ := g.svc.Store.Checkpoints(context.Background(), gj.ID, psijob.PhaseGuestTags)
	finished := len(cps)
	if finished < k || finished >= 13 {
		t.Fatalf("%d batches checkpointed", finished)
	}
	before := map[int]time.Time{}
	for _, c := range cps {
		before[c.Batch] = c.CreatedAt
	}
	mid, _ := g.svc.Store.GetJob(context.Background(), gj.ID)
	if mid.Status != psijob.StatusRunning || mid.DoneItems < int64((k-1)*40) {
		t.Fatalf("after the kill: %s, %d items done", mid.Status, mid.DoneItems)
	}

	j, err := g.svc.Runner.Run(context.Background(), gj.ID)
	if err != nil || j.Status != psijob.StatusDone {
		t.Fatalf("resumed: %v %s %s", err, j.Status, j.Error)
	}
	for b := range finished {
		if n := g.trace.sent(b); n != 1 {
			t.Errorf("batch %d (checkpointed before the kill) was sent %d times", b, n)
		}
	}
	for b := finished + 1; b < 13; b++ {
		if n := g.trace.sent(b); n != 1 {
			t.Errorf("batch %d was sent %d times", b, n)
		}
	}
	wantRows, wantIDs := reference(trim, guestIDs, hostIDs)
	rows, ids := g.resultCSV(t, gj.ID)
	if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
		t.Errorf("result after resume: %d rows, want %d", len(rows), len(wantRows))
	}
}

func TestCancelFromEitherSide(t *testing.T) {
	for _, side := range []string{"guest", "host"} {
		t.Run(side, func(t *testing.T) {
			f := newFederation(t, "bank", "partner")
			g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 20, Window: 1}, delay: 20 * time.Millisecond}, nodeOptions{})
			hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", randomIDs("h", 400)), Column: "id"}})
			gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", randomIDs("g", 400)), Column: "id"}})
			for {
				var j psiapi.JobBody
				g.api(t, "GET", "/psi/v1/jobs/"+gj.ID, nil, &j)
				if j.Progress.DoneItems > 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			n, id := g, gj.ID
			if side == "host" {
				n, id = h, hj.ID
			}
			if status, data := n.api(t, "POST", "/psi/v1/jobs/"+id+"/cancel", nil, nil); status != http.StatusOK {
				t.Fatalf("cancel: %d %s", status, data)
			}
			gEnd := g.wait(t, gj.ID, 10*time.Second)
			hEnd := h.wait(t, hj.ID, 10*time.Second)
			if gEnd.Status != "cancelled" || hEnd.Status != "cancelled" {
				t.Fatalf("guest %s (%s), host %s (%s)", gEnd.Status, gEnd.Error, hEnd.Status, hEnd.Error)
			}
			if side == "host" && !strings.Contains(gEnd.Error, "cancelled by partner") {
				t.Errorf("the guest's reason: %q", gEnd.Error)
			}
			if side == "guest" && !strings.Contains(hEnd.Error, "cancelled by the guest") {
				t.Errorf("the host's reason: %q", hEnd.Error)
			}
			if status, _ := n.api(t, "POST", "/psi/v1/jobs/"+id+"/cancel", nil, nil); status != http.StatusConflict {
				t.Errorf("cancelling twice: %d", status)
			}
		})
	}
}

func TestDeadHostFailsWithinDeadline(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	deadline := 2 * time.Second
	g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 20, Window: 1, PeerDeadline: deadline, CallTimeout: time.Second}, delay: 10 * time.Millisecond}, nodeOptions{})
	h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", randomIDs("h", 400)), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", randomIDs("g", 400)), Column: "id"}})
	for {
		var j psiapi.JobBody
		g.api(t, "GET", "/psi/v1/jobs/"+gj.ID, nil, &j)
		if j.Progress.DoneItems > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	if err := h.stop(); err != nil {
		t.Logf("host stop: %v", err)
	}
	end := g.wait(t, gj.ID, deadline+10*time.Second)
	if end.Status != "failed" || !strings.Contains(end.Error, "partner did not answer") {
		t.Fatalf("%s: %q", end.Status, end.Error)
	}
	if took := time.Since(stopped); took > deadline+5*time.Second {
		t.Errorf("failed %v after the host died (deadline %v)", took, deadline)
	}
	t.Logf("reason: %s", end.Error)
}

// TestPeerAPISecurity drives the host's peer API directly with real
// certificates: unregistered parties, someone else's session, replays,
// oversized batches and invalid points.
func TestPeerAPISecurity(t *testing.T) {
	f := newFederation(t, "bank", "partner", "telco", "mallory")
	h := f.start(t, "partner", nodeOptions{role: "host", peers: []config.Peer{{Name: "bank", URL: "https://127.0.0.1:1"}, {Name: "telco", URL: "https://127.0.0.1:1"}}})
	bank, telco, mallory := f.tlsClient(t, "bank"), f.tlsClient(t, "telco"), f.tlsClient(t, "mallory")
	base := h.url + "/psi/v1/peer/sessions"
	hostIDs := randomIDs("h", 30)
	newHostJob := func(peer string) psiapi.JobBody {
		return h.createJob(t, psiapi.CreateJobBody{Peer: peer, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, peer+".csv", hostIDs), Column: "id"}})
	}
	open := func(client *http.Client, count int) (int, string, psiapi.OpenAnswer) {
		body, _ := json.Marshal(psiapi.OpenBody{Version: 1, Mode: "intersection", GuestCount: count, BatchSize: 8, Normalization: trim.Fingerprint()})
		status, code, data := peerCall(t, client, "POST", base, "application/json", body)
		var a psiapi.OpenAnswer
		json.Unmarshal(data, &a)
		return status, code, a
	}
	points := func(session string, n int, seed string) []byte {
		k, _ := psi.NewKey()
		ids := make([][]byte, n)
		for i := range ids {
			ids[i] = fmt.Appendf(nil, "%s-%d", seed, i)
		}
		out := make([]byte, 32*n)
		k.HashAndBlind(psi.DST([]byte(session)), ids, out)
		return out
	}

	t.Run("unregistered party", func(t *testing.T) {
		newHostJob("bank")
		if status, code, _ := open(mallory, 10); status != http.StatusForbidden || code != "peer_not_allowed" {
			t.Errorf("mallory (trusted CA, not registered): %d %s", status, code)
		}
		other := newFederation(t, "bank")
		if status, msg, _ := peerCall(t, other.tlsClient(t, "bank"), "POST", base, "application/json", []byte(`{}`)); status != 0 {
			t.Errorf("a certificate of another CA: %d %s", status, msg)
		}
		plain := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(nil, mustPool(t, f.pki.CACert))}}
		if status, msg, _ := peerCall(t, plain, "POST", base, "application/json", []byte(`{}`)); status != 0 {
			t.Errorf("no client certificate: %d %s", status, msg)
		}
	})

	t.Run("another session's id", func(t *testing.T) {
		newHostJob("telco")
		_, _, a := open(bank, 10)
		if a.Session == "" {
			t.Fatal("bank could not open a session")
		}
		if status, code, _ := peerCall(t, telco, "GET", base+"/"+a.Session+"/host/0", "", nil); status != http.StatusNotFound || code != "session_not_found" {
			t.Errorf("telco with bank's session: %d %s", status, code)
		}
		if status, code, _ := peerCall(t, telco, "PUT", base+"/"+a.Session+"/guest/0", "application/octet-stream", points(a.Session, 8, "t")); status != http.StatusNotFound || code != "session_not_found" {
			t.Errorf("telco sending into bank's session: %d %s", status, code)
		}
		if status, _, _ := peerCall(t, bank, "GET", base+"/"+a.Session+"/host/0", "", nil); status != http.StatusOK {
			t.Errorf("bank's own session: %d", status)
		}
		if status, code, _ := peerCall(t, bank, "GET", base+"/"+strings.Repeat("ab", 16)+"/host/0", "", nil); status != http.StatusNotFound || code != "session_not_found" {
			t.Errorf("a guessed session id: %d %s", status, code)
		}
	})

	abortCase := func(t *testing.T, send func(session string) (int, string), wantStatus int, wantCode string) {
		hj := newHostJob("bank")
		status, code, a := open(bank, 16)
		if status != http.StatusCreated {
			t.Fatalf("open: %d %s", status, code)
		}
		if st, cd := send(a.Session); st != wantStatus || cd != wantCode {
			t.Errorf("got %d %s, want %d %s", st, cd, wantStatus, wantCode)
		}
		if st, cd, _ := peerCall(t, bank, "GET", base+"/"+a.Session+"/host/0", "", nil); st != http.StatusGone || cd != "session_aborted" {
			t.Errorf("after a protocol error the session must be aborted: %d %s", st, cd)
		}
		j := h.wait(t, hj.ID, 5*time.Second)
		if j.Status != "failed" || j.Error == "" {
			t.Errorf("host job %s %q", j.Status, j.Error)
		}
		t.Logf("host job error: %s", j.Error)
	}
	t.Run("replay with other content", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			if st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", points(s, 8, "a")); st != http.StatusOK {
				t.Fatalf("batch 0: %d %s", st, cd)
			}
			st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", points(s, 8, "b"))
			return st, cd
		}, http.StatusBadRequest, "protocol_error")
	})
	t.Run("oversized batch", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", points(s, 9, "a"))
			return st, cd
		}, http.StatusRequestEntityTooLarge, "protocol_error")
	})
	t.Run("huge body", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", make([]byte, 2<<20))
			return st, cd
		}, http.StatusRequestEntityTooLarge, "protocol_error")
	})
	t.Run("identity point", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			p := points(s, 8, "a")
			clear(p[32:64])
			st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", p)
			return st, cd
		}, http.StatusBadRequest, "invalid_point")
	})
	t.Run("non-canonical point", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			p := points(s, 8, "a")
			copy(p[:32], bytes.Repeat([]byte{0xff}, 32))
			st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/guest/0", "application/octet-stream", p)
			return st, cd
		}, http.StatusBadRequest, "invalid_point")
	})
	t.Run("batch beyond the set", func(t *testing.T) {
		abortCase(t, func(s string) (int, string) {
			st, cd, _ := peerCall(t, bank, "GET", base+"/"+s+"/host/99", "", nil)
			return st, cd
		}, http.StatusBadRequest, "protocol_error")
	})
	t.Run("wrong content type", func(t *testing.T) {
		newHostJob("bank")
		_, _, a := open(bank, 16)
		if st, cd, _ := peerCall(t, bank, "PUT", base+"/"+a.Session+"/guest/0", "application/json", points(a.Session, 8, "a")); st != http.StatusUnsupportedMediaType {
			t.Errorf("%d %s", st, cd)
		}
	})
	t.Run("normalisation mismatch", func(t *testing.T) {
		newHostJob("bank")
		body, _ := json.Marshal(psiapi.OpenBody{Version: 1, Mode: "intersection", GuestCount: 3, BatchSize: 8, Normalization: psi.Normalization{CaseFold: true}.Fingerprint()})
		if st, cd, data := peerCall(t, bank, "POST", base, "application/json", body); st != http.StatusConflict || cd != "mismatch" {
			t.Errorf("%d %s %s", st, cd, data)
		}
	})
}

func mustPool(t *testing.T, files ...string) *x509.CertPool {
	t.Helper()
	p, err := pki.LoadCertPool(files...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
