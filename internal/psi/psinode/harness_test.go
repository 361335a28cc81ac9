package psinode_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
)

// federation is a development PKI shared by the test's parties.
type federation struct {
	pki *pki.DevPKI
}

func newFederation(t *testing.T, parties ...string) *federation {
	t.Helper()
	p, err := pki.GenerateDev(t.TempDir(), parties, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &federation{pki: p}
}

// tlsClient returns an HTTPS client presenting party's client certificate.
func (f *federation) tlsClient(t *testing.T, party string) *http.Client {
	t.Helper()
	pf := f.pki.Parties[party]
	cert, err := pki.LoadKeyPair(pf.ClientCert, pf.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.LoadCertPool(f.pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&cert, pool)}}
}

// testNode is one party's node running only the psi service, over mutual
// TLS on a free loopback port.
type testNode struct {
	name   string
	node   *node.Node
	svc    *psinode.Service
	reg    *prometheus.Registry
	url    string
	client *http.Client // this party's own mTLS client, for its client API
	trace  *traceTransport
	stop   func() error
	dir    string
	cfg    config.Config
}

type nodeOptions struct {
	role  string
	peers []config.Peer
	opts  psijob.Options
	delay time.Duration // added to every outgoing peer call
	data  string        // data directory (default: a new one)
	addr  string        // listen address (default: a free port)
	// consentURL is the node's consent_service_url, consentToken the
	// bearer token it sends there.
	consentURL, consentToken string
}

func (f *federation) start(t *testing.T, name string, o nodeOptions) *testNode {
	t.Helper()
	pf := f.pki.Parties[name]
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir = name, o.role, o.data
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Services = []string{config.ServicePSI}
	cfg.Addrs[config.ServicePSI] = "127.0.0.1:0"
	if o.addr != "" {
		cfg.Addrs[config.ServicePSI] = o.addr
	}
	cfg.HTTP.ShutdownGrace = 3 * time.Second
	cfg.TLS = config.TLS{CertFile: pf.ServerCert, KeyFile: pf.ServerKey, CAFile: f.pki.CACert,
		ClientCertFile: pf.ClientCert, ClientKeyFile: pf.ClientKey, RequireClientCert: true}
	cfg.Peers = o.peers
	cfg.ConsentServiceURL = o.consentURL
	tn := &testNode{name: name, reg: prometheus.NewRegistry(), client: f.tlsClient(t, name), dir: cfg.PSIInputs(), cfg: cfg}
	opts := o.opts
	if opts.PollEvery == 0 {
		opts.PollEvery = 50 * time.Millisecond
	}
	factory := func(ctx context.Context, e node.Env) (node.Service, error) {
		d := node.PSIDeps(e)
		tn.trace = &traceTransport{base: d.PeerClient.Transport, delay: o.delay}
		pc := *d.PeerClient
		pc.Transport = tn.trace
		d.PeerClient, d.Options, d.ConsentToken = &pc, opts, o.consentToken
		svc, err := psinode.New(ctx, d)
		tn.svc = svc
		return svc, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: tn.reg, Services: map[string]node.Factory{config.ServicePSI: factory}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tn.node = n
	tn.url = "https://" + n.Addr(config.ServicePSI)
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	tn.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("node did not stop within 15s")
		}
	})
	t.Cleanup(func() { tn.stop() })
	return tn
}

// pair starts a host ("partner") and a guest ("bank") that know each other.
func (f *federation) pair(t *testing.T, guest, host nodeOptions) (g, h *testNode) {
	t.Helper()
	host.role = "host"
	host.peers = append(host.peers, config.Peer{Name: "bank", URL: "https://127.0.0.1:1"})
	h = f.start(t, "partner", host)
	guest.role = "guest"
	guest.peers = append(guest.peers, config.Peer{Name: "partner", URL: h.url})
	g = f.start(t, "bank", guest)
	return g, h
}

// traceTransport counts (and may slow down) the guest's peer calls.
type traceTransport struct {
	base  http.RoundTripper
	delay time.Duration
	mu    sync.Mutex
	puts  map[string]int // "guest/<batch>" → times sent
	calls atomic.Int64
}

func (tt *traceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tt.calls.Add(1)
	if i := strings.Index(r.URL.Path, "/guest/"); i >= 0 && r.Method == http.MethodPut {
		tt.mu.Lock()
		if tt.puts == nil {
			tt.puts = map[string]int{}
		}
		tt.puts[r.URL.Path[i+1:]]++
		tt.mu.Unlock()
	}
	if tt.delay > 0 {
		select {
		case <-time.After(tt.delay):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return tt.base.RoundTrip(r)
}

func (tt *traceTransport) sent(batch int) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.puts[fmt.Sprintf("guest/%d", batch)]
}

// api calls the node's client API and decodes a JSON answer into out.
func (n *testNode) api(t *testing.T, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := n.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, data
}

func writeCSV(t *testing.T, dir, name string, header []string, rows [][]string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write(header)
	w.WriteAll(rows)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func idCSV(t *testing.T, dir, name string, ids []string) string {
	rows := make([][]string, len(ids))
	for i, id := range ids {
		rows[i] = []string{id, fmt.Sprint(i)}
	}
	return writeCSV(t, dir, name, []string{"id", "n"}, rows)
}

// createJob creates a job through the client API.
func (n *testNode) createJob(t *testing.T, body psiapi.CreateJobBody) psiapi.JobBody {
	t.Helper()
	var j psiapi.JobBody
	if status, data := n.api(t, "POST", "/psi/v1/jobs", body, &j); status != http.StatusCreated {
		t.Fatalf("create job: %d %s", status, data)
	}
	return j
}

// wait polls a job until it is final.
func (n *testNode) wait(t *testing.T, id string, within time.Duration) psiapi.JobBody {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var j psiapi.JobBody
		if status, data := n.api(t, "GET", "/psi/v1/jobs/"+id, nil, &j); status != http.StatusOK {
			t.Fatalf("get job: %d %s", status, data)
		}
		if psijob.Status(j.Status).Final() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s (%+v)", id, j.Status, within, j.Progress)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// resultCSV downloads the intersection as rows and identifiers.
func (n *testNode) resultCSV(t *testing.T, id string) (rows []string, ids []string) {
	t.Helper()
	resp, err := n.client.Get(n.url + "/psi/v1/jobs/" + id + "/result.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("result.csv: %d %s", resp.StatusCode, b)
	}
	recs, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "row,id" {
		t.Fatalf("header: %v", recs)
	}
	for _, r := range recs[1:] {
		rows = append(rows, r[0])
		ids = append(ids, r[1])
	}
	return rows, ids
}

// reference is the plaintext intersection under norm: the guest's rows
// (first occurrence of each identifier) whose identifier the host has.
func reference(norm psi.Normalization, guest, host []string) (rows, ids []string) {
	hs := map[string]bool{}
	for _, h := range host {
		if v, err := norm.Apply(h); err == nil {
			hs[v] = true
		}
	}
	seen := map[string]bool{}
	for i, g := range guest {
		v, err := norm.Apply(g)
		if err != nil || seen[v] {
			continue
		}
		seen[v] = true
		if hs[v] {
			rows = append(rows, fmt.Sprint(i))
			ids = append(ids, v)
		}
	}
	return rows, ids
}

func randomIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		var b [6]byte
		rand.Read(b[:])
		out[i] = fmt.Sprintf("%s-%x", prefix, b)
	}
	return out
}

// peerCall sends a raw peer-API request to n as the holder of client.
func peerCall(t *testing.T, client *http.Client, method, url, contentType string, body []byte) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.Unmarshal(data, &e)
	return resp.StatusCode, e.Error.Code, data
}
