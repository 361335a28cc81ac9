package trainjobnode_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobnode"
)

// party is one node of the test: its PSI service and a training service
// that can be restarted on the same database, both on one plain-HTTP
// loopback server.
type party struct {
	name, other string
	dir         string
	db          *sqldb.DB
	server      *httptest.Server
	psi         *psinode.Service
	reg         *registry.Registry
	metrics     *prometheus.Registry
	res         *node.Resources

	mu    sync.Mutex
	train *trainjobnode.Service
	mux   *http.ServeMux
}

func (p *party) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mux := p.mux
	p.mu.Unlock()
	mux.ServeHTTP(w, r)
}

func (p *party) config(peerURL string) config.Config {
	role := "guest"
	if p.name == "telecom" {
		role = "host"
	}
	return config.Config{Party: p.name, Role: role, DataDir: p.dir, PSIInputDir: p.dir, Peers: []config.Peer{{Name: p.other, URL: peerURL}}}
}

// startTraining (re)starts the party's training service on its database.
func (p *party) startTraining(t *testing.T) *trainjobnode.Service {
	t.Helper()
	svc, err := trainjobnode.New(context.Background(), node.TrainingDeps(nodetest.Env(p.res, p.metrics), p.reg))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.psi.Mount(mux)
	svc.Mount(mux)
	p.mu.Lock()
	p.train, p.mux = svc, mux
	p.mu.Unlock()
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

func newParties(t *testing.T, b sqldbtest.Backend) (guest, host *party) {
	t.Helper()
	guest = &party{name: "bank", other: "telecom", dir: t.TempDir(), db: b.Open(t, true), metrics: prometheus.NewRegistry()}
	host = &party{name: "telecom", other: "bank", dir: t.TempDir(), db: b.Open(t, true), metrics: prometheus.NewRegistry()}
	for _, p := range []*party{guest, host} {
		p.mux = http.NewServeMux()
		p.server = httptest.NewServer(p)
		t.Cleanup(p.server.Close)
		p.reg = registry.New(sqlregistry.New(p.db), nil, registry.Options{})
	}
	for _, p := range []*party{guest, host} {
		other := map[*party]*party{guest: host, host: guest}[p]
		p.res = nodetest.Resources(t, p.config(other.server.URL), nodetest.Options{DB: p.db, Registerer: p.metrics})
		d := node.PSIDeps(nodetest.Env(p.res, p.metrics))
		d.Options = psijob.Options{PollEvery: 20 * time.Millisecond}
		svc, err := psinode.New(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		p.psi = svc
		t.Cleanup(func() { _ = svc.Close() })
		p.startTraining(t)
	}
	return guest, host
}

// writeRows writes rows lo..hi-1 of the repository's credit data.
func writeRows(t *testing.T, src, dst string, labelled bool, lo, hi int) {
	t.Helper()
	tb, err := dataset.ReadFile(src, labelled)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, 0, hi-lo)
	for i := hi - 1; i >= lo; i-- { // reversed: alignment must not rely on file order
		idx = append(idx, i)
	}
	var b bytes.Buffer
	if err := dataset.WriteCSV(&b, tb.Rows(idx)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitPSI(t *testing.T, p *party, id string) psijob.Job {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		j, err := p.psi.Jobs.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status.Final() && (j.Role == psijob.RoleGuest || j.IntersectionSize != nil || j.Status != psijob.StatusDone) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("PSI job %s did not end", id)
	return psijob.Job{}
}

func waitJob(t *testing.T, s *trainjobnode.Service, id string, until func(trainjob.Job) bool) trainjob.Job {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := s.Jobs.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if until(j) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("training job %s: condition not reached", id)
	return trainjob.Job{}
}

func ended(j trainjob.Job) bool { return trainjob.Final(j.Status) }

func maxDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// TestPSIAlignedJobResumesAndRegisters runs the whole path on each
// database: PSI in mode both; a guest job aligned to it, whose session
// creates the host's job; the guest's service closed mid-training and
// started again on the same database; the job resumes after its last
// checkpoint and ends with the model an uninterrupted job trains; both
// halves are in each party's registry under one id and version.
func TestPSIAlignedJobResumesAndRegisters(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { psiAlignedJob(t, b) })
	}
}

func psiAlignedJob(t *testing.T, b sqldbtest.Backend) {
	ctx := context.Background()
	guest, host := newParties(t, b)
	data := filepath.Join("..", "..", "..", "..", "data")
	writeRows(t, filepath.Join(data, "default_credit_hetero_guest.csv"), filepath.Join(guest.dir, "g.csv"), true, 0, 3000)
	writeRows(t, filepath.Join(data, "default_credit_hetero_host.csv"), filepath.Join(host.dir, "h.csv"), false, 500, 3500)

	// PSI in mode both; the guest's job does not know the host's job id.
	hp, err := host.psi.Jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleHost, Peer: "bank", Mode: psijob.ModeBoth,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: filepath.Join(host.dir, "h.csv"), Column: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	gp, err := guest.psi.Jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleGuest, Peer: "telecom", Mode: psijob.ModeBoth,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: filepath.Join(guest.dir, "g.csv"), Column: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitPSI(t, guest, gp.ID); j.Status != psijob.StatusDone || *j.IntersectionSize != 2500 {
		t.Fatalf("guest PSI job %s %s", j.Status, j.Error)
	}
	if j := waitPSI(t, host, hp.ID); j.Status != psijob.StatusDone {
		t.Fatalf("host PSI job %s %s", j.Status, j.Error)
	}
	// An intersection-mode job cannot align training: make one.
	hp2, _ := host.psi.Jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleHost, Peer: "bank",
		Input: psijob.Input{Kind: psijob.InputCSV, Path: filepath.Join(host.dir, "h.csv"), Column: "id"}})
	gp2, err := guest.psi.Jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleGuest, Peer: "telecom", PeerJob: hp2.ID,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: filepath.Join(guest.dir, "g.csv"), Column: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	waitPSI(t, guest, gp2.ID)

	gsvc := guest.train
	zero := 0
	req := trainjob.Request{Role: trainjob.RoleGuest, Peer: host.server.URL, File: "g.csv", PSIJob: gp.ID, Epochs: 6, Patience: &zero}
	for name, bad := range map[string]func(*trainjob.Request){
		"algo":         func(r *trainjob.Request) { r.Algo = "secureboost" },
		"psi mode":     func(r *trainjob.Request) { r.PSIJob = gp2.ID },
		"no psi job":   func(r *trainjob.Request) { r.PSIJob = "psi_00000000000000000000" },
		"file":         func(r *trainjob.Request) { r.File = "../g.csv" },
		"peer":         func(r *trainjob.Request) { r.Peer = "http://127.0.0.1:1" },
		"class weight": func(r *trainjob.Request) { r.ClassWeights = "heavy" },
	} {
		r := req
		bad(&r)
		if _, err := gsvc.Jobs.Create(ctx, r); !errors.Is(err, trainjob.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if jobs, _ := gsvc.Jobs.List(ctx, trainjob.Filter{}); len(jobs) != 0 {
		t.Fatalf("bad requests created %d jobs", len(jobs))
	}

	// The interrupted job.
	j1, err := gsvc.Jobs.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if j1.ModelID != trainjob.DefaultModelID || j1.Version != "1" || j1.Rows != 2500 {
		t.Fatalf("job %+v", j1)
	}
	waitJob(t, gsvc, j1.ID, func(j trainjob.Job) bool { return len(j.EpochStats) >= 2 || ended(j) })
	if err := gsvc.Close(); err != nil {
		t.Fatal(err)
	}
	mid, _ := gsvc.Jobs.Get(ctx, j1.ID)
	if mid.Status != trainjob.StatusRunning || len(mid.EpochStats) >= 6 {
		t.Fatalf("after the shutdown the job is %s with %d epochs: %s", mid.Status, len(mid.EpochStats), mid.Error)
	}
	t.Logf("guest stopped after %d epochs", len(mid.EpochStats))
	gsvc = guest.startTraining(t) // resumes
	done1 := waitJob(t, gsvc, j1.ID, ended)
	if done1.Status != trainjob.StatusSucceeded || len(done1.EpochStats) != 6 || done1.Test == nil || done1.Test.AUC < 0.65 || done1.PeerJob == "" {
		t.Fatalf("resumed job %+v", done1)
	}
	hj1 := waitJob(t, host.train, done1.PeerJob, ended)
	if hj1.Status != trainjob.StatusSucceeded || hj1.PSIJob != hp.ID || hj1.File != "h.csv" || hj1.PeerJob != j1.ID || hj1.Rows != 2500 || hj1.Version != "1" {
		t.Fatalf("host job %+v", hj1)
	}

	if e, err := host.reg.Get(ctx, trainjob.DefaultModelID, "1", "host"); err != nil || !strings.Contains(string(e.Card), hp.ID) || !strings.Contains(string(e.Card), `"rows":2500`) {
		t.Errorf("host card: %s %v", e.Card, err)
	}

	// The uninterrupted reference.
	j2, err := gsvc.Jobs.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	done2 := waitJob(t, gsvc, j2.ID, ended)
	if done2.Status != trainjob.StatusSucceeded || done2.Version != "2" {
		t.Fatalf("reference job %+v", done2)
	}
	g1, _, err := guest.reg.GuestModel(ctx, trainjob.DefaultModelID, "1")
	if err != nil {
		t.Fatal(err)
	}
	g2, _, err := guest.reg.GuestModel(ctx, trainjob.DefaultModelID, "2")
	if err != nil {
		t.Fatal(err)
	}
	h1, _, err := host.reg.HostModel(ctx, trainjob.DefaultModelID, "1")
	if err != nil {
		t.Fatal(err)
	}
	h2, _, err := host.reg.HostModel(ctx, trainjob.DefaultModelID, "2")
	if err != nil {
		t.Fatal(err)
	}
	dg, dh := maxDiff(g1.Weights, g2.Weights), maxDiff(h1.Weights, h2.Weights)
	t.Logf("resumed vs uninterrupted: guest weights differ by %.2g, bias by %.2g, host weights by %.2g; test AUC %.6f vs %.6f",
		dg, math.Abs(g1.Bias-g2.Bias), dh, done1.Test.AUC, done2.Test.AUC)
	if dg > 1e-9 || dh > 1e-9 || math.Abs(g1.Bias-g2.Bias) > 1e-9 || math.Abs(done1.Test.AUC-done2.Test.AUC) > 1e-9 {
		t.Errorf("the resumed model differs from the uninterrupted one")
	}
	if g1.Hosts[0].ModelDigest == "" {
		t.Error("the guest's half does not link the host's")
	}
	if n := testutil.ToFloat64(prometheusCounter(t, guest.metrics, "training_jobs_total", "succeeded")); n < 1 {
		t.Errorf("training_jobs_total{succeeded} = %v", n)
	}

	// A resume the host refuses: the host's job was cancelled while the
	// guest was down. The guest's job fails with the host's reason.
	j3, err := gsvc.Jobs.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, gsvc, j3.ID, func(j trainjob.Job) bool { return len(j.EpochStats) >= 1 || ended(j) })
	_ = gsvc.Close()
	mid, _ = gsvc.Jobs.Get(ctx, j3.ID)
	if mid.PeerJob == "" {
		t.Fatalf("job %+v", mid)
	}
	if _, err := host.train.Jobs.Cancel(ctx, mid.PeerJob); err != nil {
		t.Fatal(err)
	}
	gsvc = guest.startTraining(t)
	done3 := waitJob(t, gsvc, j3.ID, ended)
	hj3, _ := host.train.Jobs.Get(ctx, mid.PeerJob)
	if done3.Status != trainjob.StatusFailed || !strings.Contains(done3.Error, "cancelled") || !strings.Contains(done3.Error, "cannot resume") ||
		hj3.Status != trainjob.StatusCancelled {
		t.Errorf("refused resume: guest %s %q, host %s %q", done3.Status, done3.Error, hj3.Status, hj3.Error)
	}

	// The host's service restarts mid-training: the guest finds its
	// session lost and resumes.
	j4, err := gsvc.Jobs.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, gsvc, j4.ID, func(j trainjob.Job) bool { return len(j.EpochStats) >= 2 || ended(j) })
	_ = host.train.Close()
	host.startTraining(t)
	done4 := waitJob(t, gsvc, j4.ID, ended)
	if done4.Status != trainjob.StatusSucceeded {
		t.Fatalf("job after the host's restart %+v", done4)
	}
	g4, _, err := guest.reg.GuestModel(ctx, trainjob.DefaultModelID, done4.Version)
	if err != nil {
		t.Fatal(err)
	}
	h4, _, err := host.reg.HostModel(ctx, trainjob.DefaultModelID, done4.Version)
	if err != nil {
		t.Fatal(err)
	}
	if dg, dh := maxDiff(g4.Weights, g2.Weights), maxDiff(h4.Weights, h2.Weights); dg > 1e-9 || dh > 1e-9 {
		t.Errorf("after the host's restart: guest weights differ by %g, host weights by %g", dg, dh)
	}

	// The list survives the restarts.
	jobs, err := gsvc.Jobs.List(ctx, trainjob.Filter{Role: trainjob.RoleGuest})
	if err != nil || len(jobs) != 4 || jobs[3].ID != j1.ID {
		t.Errorf("list after restarts: %d jobs, %v", len(jobs), err)
	}

	// The guest cannot make the host read another of its files: only its
	// PSI job's input. The refusal does not quote the file.
	if err := os.WriteFile(filepath.Join(host.dir, "secret.csv"), []byte("id,x0\nsecret-line,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := req
	bad.HostFile = "secret.csv"
	j5, err := gsvc.Jobs.Create(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	done5 := waitJob(t, gsvc, j5.ID, ended)
	if done5.Status != trainjob.StatusFailed || !strings.Contains(done5.Error, "host_file is not the input") || strings.Contains(done5.Error, "secret-line") {
		t.Errorf("a guest-chosen host file: %s %q", done5.Status, done5.Error)
	}
	if hjobs, _ := host.train.Jobs.List(ctx, trainjob.Filter{}); len(hjobs) != 4 {
		t.Errorf("the refused session created a host job: %d host jobs", len(hjobs))
	}
}

// prometheusCounter finds the training_jobs_total{role="guest",status}
// counter in reg.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, name, status string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
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
			if labels["role"] == "guest" && labels["status"] == status {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no %s{status=%q}", name, status)
	return nil
}
