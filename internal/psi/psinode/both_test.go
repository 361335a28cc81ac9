package psinode_test

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
)

// TestBothLearnOverMutualTLS: in mode both the guest and the host each
// export, through their own result.csv, exactly their plaintext rows of
// the intersection.
func TestBothLearnOverMutualTLS(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{opts: psijob.Options{BatchSize: 50, ResultChunk: 40}}, nodeOptions{})
	common := randomIDs("c", 300)
	tests := []struct {
		name        string
		guest, host []string
	}{
		{"partial overlap", append(randomIDs("g", 200), common...), append(randomIDs("h", 260), common[:170]...)},
		{"duplicates", append(append([]string{" d1", "d1", "d1 ", "d2"}, common[:40]...), common[:40]...), append([]string{"x", "d1", "d1", "y", " d2"}, common[20:90]...)},
		{"unicode", []string{"张三-110101199003077777", "Ölçü", "😀", "ascii", "ﬁ"}, []string{"😀", "张三-110101199003077777", "OLÇÜ", "ﬁ"}},
		{"empty guest", nil, common},
		{"empty host", common, nil},
		{"disjoint", randomIDs("a", 120), randomIDs("b", 80)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gj, hj := run(t, g, h, tt.guest, tt.host, "both", nil)
			wantRows, wantIDs := reference(trim, tt.guest, tt.host)
			if gj.Status != "done" || gj.Mode != "both" || gj.IntersectionSize == nil || *gj.IntersectionSize != int64(len(wantRows)) {
				t.Fatalf("guest job %s (%s): size %v, want %d", gj.Status, gj.Error, gj.IntersectionSize, len(wantRows))
			}
			hostRows, hostIDs := reference(trim, tt.host, tt.guest)
			if hj.Status != "done" || hj.Mode != "both" || hj.IntersectionSize == nil || *hj.IntersectionSize != int64(len(hostRows)) {
				t.Fatalf("host job %s (%s): size %v, want %d", hj.Status, hj.Error, hj.IntersectionSize, len(hostRows))
			}
			rows, ids := g.resultCSV(t, gj.ID)
			if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
				t.Errorf("guest result.csv\n got %v %v\nwant %v %v", rows, ids, wantRows, wantIDs)
			}
			rows, ids = h.resultCSV(t, hj.ID)
			if !slices.Equal(rows, hostRows) || !slices.Equal(ids, hostIDs) {
				t.Errorf("host result.csv\n got %v %v\nwant %v %v", rows, ids, hostRows, hostIDs)
			}
		})
	}
	// A host's intersection job still has no rows.
	_, hj := run(t, g, h, common[:10], common[5:20], "", nil)
	if status, data := h.api(t, "GET", "/psi/v1/jobs/"+hj.ID+"/result.csv", nil, nil); status != http.StatusConflict || !strings.Contains(string(data), "no_rows") {
		t.Errorf("host intersection result.csv: %d %s", status, data)
	}
}

// TestBothLearnModeMismatch: a host job created for another mode refuses
// the guest, which fails with the reason; the host job keeps waiting.
func TestBothLearnModeMismatch(t *testing.T) {
	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{}, nodeOptions{})
	for _, tt := range []struct{ host, guest string }{{"both", "intersection"}, {"intersection", "both"}, {"cardinality", "both"}, {"both", "cardinality"}} {
		t.Run(tt.host+"/"+tt.guest, func(t *testing.T) {
			hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Mode: tt.host, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", randomIDs("h", 20)), Column: "id"}})
			gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Mode: tt.guest, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", randomIDs("g", 20)), Column: "id"}})
			end := g.wait(t, gj.ID, 30*time.Second)
			if end.Status != "failed" || !strings.Contains(end.Error, "mismatch") || !strings.Contains(end.Error, "mode") {
				t.Errorf("guest job %s: %q", end.Status, end.Error)
			}
			var j psiapi.JobBody
			h.api(t, "GET", "/psi/v1/jobs/"+hj.ID, nil, &j)
			if j.Status != "pending" {
				t.Errorf("the refused host job is %s", j.Status)
			}
			t.Logf("reason: %s", end.Error)
			h.api(t, "POST", "/psi/v1/jobs/"+hj.ID+"/cancel", nil, nil)
		})
	}
}

// TestRevealPeerAPI drives the reveal endpoint with the guest's real
// certificate: a forged position, or any other broken reveal, aborts the
// session and fails the host job.
func TestRevealPeerAPI(t *testing.T) {
	f := newFederation(t, "bank", "partner", "telco")
	h := f.start(t, "partner", nodeOptions{role: "host", peers: []config.Peer{{Name: "bank", URL: "https://127.0.0.1:1"}, {Name: "telco", URL: "https://127.0.0.1:1"}}})
	bank, telco := f.tlsClient(t, "bank"), f.tlsClient(t, "telco")
	base := h.url + "/psi/v1/peer/sessions"
	const hostCount = 30
	open := func(t *testing.T, mode string) (psiapi.JobBody, string) {
		t.Helper()
		hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Mode: mode, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", randomIDs("h", hostCount)), Column: "id"}})
		body, _ := json.Marshal(psiapi.OpenBody{Version: 1, Mode: mode, GuestCount: 16, BatchSize: 8, Normalization: trim.Fingerprint()})
		status, code, data := peerCall(t, bank, "POST", base, "application/json", body)
		var a psiapi.OpenAnswer
		if err := json.Unmarshal(data, &a); err != nil || status != http.StatusCreated {
			t.Fatalf("open: %d %s %v", status, code, err)
		}
		return hj, a.Session
	}
	positions := func(p ...uint32) []byte {
		var b []byte
		for _, x := range p {
			b = binary.BigEndian.AppendUint32(b, x)
		}
		return b
	}
	const oct = "application/octet-stream"
	tests := []struct {
		name       string
		mode       string
		ct         string
		body       []byte
		batch      string
		wantStatus int
		wantCode   string
	}{
		{"forged position", "both", oct, positions(3, hostCount), "0", http.StatusBadRequest, "protocol_error"},
		{"huge position", "both", oct, positions(0xffffffff), "0", http.StatusBadRequest, "protocol_error"},
		{"descending", "both", oct, positions(7, 2), "0", http.StatusBadRequest, "protocol_error"},
		{"more than a batch", "both", oct, positions(0, 1, 2, 3, 4, 5, 6, 7, 8), "0", http.StatusRequestEntityTooLarge, "protocol_error"},
		{"body over the limit", "both", oct, make([]byte, psiapi.MaxRevealBody+4), "0", http.StatusRequestEntityTooLarge, "protocol_error"},
		{"partial position", "both", oct, []byte{0, 0, 1}, "0", http.StatusBadRequest, "protocol_error"},
		{"empty", "both", oct, nil, "0", http.StatusBadRequest, "protocol_error"},
		{"batch beyond the set", "both", oct, positions(1), "4", http.StatusBadRequest, "protocol_error"},
		{"intersection session", "intersection", oct, positions(1), "0", http.StatusBadRequest, "protocol_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hj, s := open(t, tt.mode)
			status, code, data := peerCall(t, bank, "PUT", base+"/"+s+"/reveal/"+tt.batch, tt.ct, tt.body)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("got %d %s %s, want %d %s", status, code, data, tt.wantStatus, tt.wantCode)
			}
			if st, cd, _ := peerCall(t, bank, "GET", base+"/"+s+"/host/0", "", nil); st != http.StatusGone || cd != "session_aborted" {
				t.Errorf("after a broken reveal the session must be aborted: %d %s", st, cd)
			}
			j := h.wait(t, hj.ID, 5*time.Second)
			if j.Status != "failed" || j.Error == "" || j.IntersectionSize != nil {
				t.Errorf("host job %s %q", j.Status, j.Error)
			}
			t.Logf("host job error: %s", j.Error)
		})
	}

	t.Run("replays, another party, finish", func(t *testing.T) {
		hj, s := open(t, "both")
		if st, cd, _ := peerCall(t, bank, "PUT", base+"/"+s+"/reveal/0", "application/json", positions(1)); st != http.StatusUnsupportedMediaType {
			t.Errorf("wrong content type: %d %s", st, cd)
		}
		for range 2 { // idempotent per batch
			if st, cd, data := peerCall(t, bank, "PUT", base+"/"+s+"/reveal/0", oct, positions(2, 9, 29)); st != http.StatusNoContent {
				t.Fatalf("reveal: %d %s %s", st, cd, data)
			}
		}
		if st, cd, _ := peerCall(t, telco, "PUT", base+"/"+s+"/reveal/1", oct, positions(1)); st != http.StatusNotFound || cd != "session_not_found" {
			t.Errorf("telco revealing into bank's session: %d %s", st, cd)
		}
		if st, cd, _ := peerCall(t, bank, "POST", base+"/"+s+"/finish", "application/json", []byte(`{"reveal_batches":1,"revealed":3,"extra":1}`)); st != http.StatusBadRequest || cd != "unknown_field" {
			t.Errorf("finish with an unknown field: %d %s", st, cd)
		}
		if st, cd, _ := peerCall(t, bank, "POST", base+"/"+s+"/finish", "application/json", []byte(`{"reveal_batches":-1,"revealed":3}`)); st != http.StatusBadRequest || cd != "protocol_error" {
			t.Errorf("finish with a negative count: %d %s", st, cd)
		}
		if st, cd, data := peerCall(t, bank, "POST", base+"/"+s+"/finish", "application/json", []byte(`{"reveal_batches":1,"revealed":3}`)); st != http.StatusNoContent {
			t.Fatalf("finish: %d %s %s", st, cd, data)
		}
		j := h.wait(t, hj.ID, 5*time.Second)
		if j.Status != "done" || j.IntersectionSize == nil || *j.IntersectionSize != 3 {
			t.Fatalf("host job %s %v (%s)", j.Status, j.IntersectionSize, j.Error)
		}
		// Three distinct host rows, ascending, each with its identifier.
		rows, ids := h.resultCSV(t, hj.ID)
		var nums []int
		for _, r := range rows {
			n, err := strconv.Atoi(r)
			if err != nil || n < 0 || n >= hostCount {
				t.Fatalf("row %q", r)
			}
			nums = append(nums, n)
		}
		if len(nums) != 3 || !slices.IsSorted(nums) || len(slices.Compact(nums)) != 3 || len(ids) != 3 || !strings.HasPrefix(ids[0], "h-") {
			t.Errorf("host result: %v %v", rows, ids)
		}
	})
}
