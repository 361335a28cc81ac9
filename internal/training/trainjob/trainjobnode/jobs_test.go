package trainjobnode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobnode"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobtest"
)

type tnode struct {
	svc    *trainjobnode.Service
	dir    string
	server *httptest.Server
	admin  *http.Client // no client certificate: a loopback operator
}

func writeCSV(t *testing.T, path string, tb *dataset.Table) {
	t.Helper()
	var b bytes.Buffer
	if err := dataset.WriteCSV(&b, tb); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func call(t *testing.T, c *http.Client, method, url string, body any, want int) trainjobapi.JobBody {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d %s, want %d", method, url, resp.StatusCode, data, want)
	}
	var j trainjobapi.JobBody
	_ = json.Unmarshal(data, &j)
	return j
}

func TestJobsOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	g, h := trainjobtest.CreditSubset(t, 2000)
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*tnode{}
	peerClients := map[string]*http.Client{}
	for _, party := range []string{"bank", "telecom"} {
		srvCert, err := ca.IssueServer("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		cli, err := ca.IssueClient(party)
		if err != nil {
			t.Fatal(err)
		}
		n := &tnode{server: httptest.NewUnstartedServer(http.NotFoundHandler())}
		n.server.TLS = pki.ServerConfig(srvCert, ca.Pool(), false)
		n.server.StartTLS()
		t.Cleanup(n.server.Close)
		n.admin = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(nil, ca.Pool())}}
		peerClients[party] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&cli, ca.Pool())}}
		nodes[party] = n
	}
	for party, n := range nodes {
		other := map[string]string{"bank": "telecom", "telecom": "bank"}[party]
		allow, err := pki.NewAllowlist(other)
		if err != nil {
			t.Fatal(err)
		}
		n.dir = t.TempDir()
		// The node serves TLS: no plain peers.
		svc, err := trainjobnode.New(context.Background(), trainjobnode.Deps{Party: party, DataDir: n.dir,
			Peers: map[string]string{other: nodes[other].server.URL}, PeerAuth: authhttp.Peers{Allowlist: allow}, PeerClient: peerClients[party]})
		if err != nil {
			t.Fatal(err)
		}
		n.svc = svc
		mux := http.NewServeMux()
		svc.Mount(mux)
		n.server.Config.Handler = mux
		t.Cleanup(func() { _ = svc.Close() })
	}
	bank, telecom := nodes["bank"], nodes["telecom"]
	writeCSV(t, filepath.Join(bank.dir, "guest.csv"), g)
	writeCSV(t, filepath.Join(telecom.dir, "host.csv"), h)

	// Bad requests.
	call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Peer: "telecom", File: "../etc/passwd"}, http.StatusBadRequest)
	call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Peer: "nobody", File: "guest.csv"}, http.StatusBadRequest)
	call(t, bank.admin, "GET", bank.server.URL+"/train/v1/jobs/tj-none", nil, http.StatusNotFound)
	call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Peer: "telecom", File: "guest.csv", Algo: "secureboost"}, http.StatusBadRequest)
	call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", map[string]any{"peer": "telecom", "file": "guest.csv", "epochs": "many"}, http.StatusBadRequest)
	call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Role: "host", Peer: "bank", File: "guest.csv", Epochs: 3}, http.StatusBadRequest)
	call(t, bank.admin, "GET", bank.server.URL+"/train/v1/jobs?status=bogus", nil, http.StatusBadRequest)
	call(t, bank.admin, "GET", bank.server.URL+"/train/v1/jobs?limit=0", nil, http.StatusBadRequest)

	hj := call(t, telecom.admin, "POST", telecom.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Role: "host", Peer: "bank", File: "host.csv"}, http.StatusAccepted)
	if hj.Status != trainjob.StatusWaiting || hj.Rows != 2000 || hj.Features != len(h.Features) {
		t.Fatalf("host job %+v", hj)
	}
	gj := call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Peer: "telecom", File: "guest.csv", Epochs: 3, ModelID: "risk"}, http.StatusAccepted)
	deadline := time.Now().Add(2 * time.Minute)
	for gj.Status == trainjob.StatusRunning && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		gj = call(t, bank.admin, "GET", bank.server.URL+"/train/v1/jobs/"+gj.ID, nil, http.StatusOK)
	}
	if gj.Status != trainjob.StatusSucceeded {
		t.Fatalf("guest job %+v", gj)
	}
	if gj.EpochsDone != 3 || len(gj.EpochStats) != 3 || gj.Test == nil || gj.Test.AUC < 0.65 || gj.ElapsedSeconds <= 0 || gj.BytesSent == 0 || gj.BytesReceived == 0 {
		t.Errorf("guest job %+v", gj)
	}
	for _, e := range gj.EpochStats {
		if e.AUC <= 0.5 || e.Loss <= 0 || e.KS <= 0 {
			t.Errorf("epoch %+v", e)
		}
	}
	for time.Now().Before(deadline) {
		hj = call(t, telecom.admin, "GET", telecom.server.URL+"/train/v1/jobs/"+hj.ID, nil, http.StatusOK)
		if hj.Status != trainjob.StatusRunning {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if hj.Status != trainjob.StatusSucceeded || hj.ModelID != "risk" || hj.BytesReceived != gj.BytesSent {
		t.Fatalf("host job %+v (guest sent %d)", hj, gj.BytesSent)
	}
	gf, err := os.Open(gj.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	gm, err := hetero.ParseGuestModel(gf)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := os.Open(hj.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	hm, err := hetero.ParseHostModel(hf)
	if err != nil {
		t.Fatal(err)
	}
	if gm.ModelID != "risk" || hm.ModelID != "risk" || len(hm.Weights) != len(h.Features) {
		t.Errorf("models %s %s %d", gm.ModelID, hm.ModelID, len(hm.Weights))
	}
	t.Logf("job %s: test AUC %.4f, %d B sent, %d B received, %.2fs", gj.ID, gj.Test.AUC, gj.BytesSent, gj.BytesReceived, gj.ElapsedSeconds)

	// A second guest job finds no waiting host job and fails cleanly.
	gj2 := call(t, bank.admin, "POST", bank.server.URL+"/train/v1/jobs", trainjobapi.CreateBody{Peer: "telecom", File: "guest.csv", Epochs: 1}, http.StatusAccepted)
	for gj2.Status == trainjob.StatusRunning && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		gj2 = call(t, bank.admin, "GET", bank.server.URL+"/train/v1/jobs/"+gj2.ID, nil, http.StatusOK)
	}
	if gj2.Status != trainjob.StatusFailed {
		t.Errorf("second guest job %+v", gj2)
	}
}
