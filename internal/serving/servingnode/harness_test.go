package servingnode_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/serving/servingnode"
	"github.com/fedrisk/fedrisk/internal/serving/servingtest"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

const (
	purpose = "credit_risk_assessment"
	modelID = "credit-risk"
	// subjects is how many of the data's customers the tests load and
	// score.
	subjects = 60
)

// trained is one model for the whole test binary: real halves trained
// over hetero.Pipe on the first rows of the bundled credit data.
var trained = sync.OnceValues(func() (*model, error) {
	c, err := servingtest.LoadCredit(filepath.Join("..", "..", "..", "data"))
	if err != nil {
		return nil, err
	}
	gm, hm, err := servingtest.Train(context.Background(), c.First(1500), modelID, "1", "partner", 2)
	if err != nil {
		return nil, err
	}
	return &model{credit: c, guest: gm, host: hm}, nil
})

type model struct {
	credit *servingtest.Credit
	guest  *hetero.GuestModel
	host   *hetero.HostModel
}

func trainedModel(t testing.TB) *model {
	t.Helper()
	m, err := trained()
	if err != nil {
		t.Fatalf("train the test model: %v", err)
	}
	return m
}

// federation is a development PKI, the federation's subject reference key
// and the model.
type federation struct {
	pki   *pki.DevPKI
	key   string
	model *model
	ids   []string // the subjects the tests score (raw identifiers)
}

func newFederation(t testing.TB) *federation {
	t.Helper()
	p, err := pki.GenerateDev(t.TempDir(), []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	m := trainedModel(t)
	// Score customers the model was not trained on.
	ids := append([]string(nil), m.credit.Guest.IDs[2000:2000+subjects]...)
	return &federation{pki: p, key: hex.EncodeToString(k), model: m, ids: ids}
}

func (f *federation) tlsClient(t testing.TB, party string) *http.Client {
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

// party is one running node.
type party struct {
	name       string
	node       *node.Node
	reg        *prometheus.Registry
	url        string // serving
	consentURL string // guest only
	svc        *servingnode.Service
	client     *http.Client
	stop       func() error
}

type options struct {
	scoring  func(*config.Scoring)
	database string // DATABASE_URL; empty: SQLite in a temp dir
	redis    string // REDIS_URL; empty: the in-memory cache
	hostURL  string // the guest's URL of the host (default: reserved port)
	addr     string
}

// freeAddr reserves a loopback port for a node started later.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func (f *federation) start(t testing.TB, name, role string, peers []config.Peer, o options) *party {
	t.Helper()
	pf := f.pki.Parties[name]
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir = name, role, t.TempDir()
	cfg.DatabaseURL, cfg.RedisURL = o.database, o.redis
	cfg.SubjectRefKey = f.key
	cfg.Services = []string{config.ServiceServing}
	if role == "guest" {
		cfg.Services = []string{config.ServiceConsent, config.ServiceServing}
	}
	for _, s := range cfg.Services {
		cfg.Addrs[s] = "127.0.0.1:0"
	}
	if o.addr != "" {
		cfg.Addrs[config.ServiceServing] = o.addr
	}
	cfg.HTTP.ShutdownGrace = 3 * time.Second
	cfg.TLS = config.TLS{CertFile: pf.ServerCert, KeyFile: pf.ServerKey, CAFile: f.pki.CACert,
		ClientCertFile: pf.ClientCert, ClientKeyFile: pf.ClientKey, RequireClientCert: true}
	cfg.Peers = peers
	cfg.Scoring.Noise = "none"
	if o.scoring != nil {
		o.scoring(&cfg.Scoring)
	}
	models := servingtest.NewModels()
	if role == "guest" {
		models.AddGuest(f.model.guest, "stable")
	} else {
		models.AddHost(f.model.host)
	}
	p := &party{name: name, reg: prometheus.NewRegistry(), client: f.tlsClient(t, name)}
	factories := map[string]node.Factory{
		config.ServiceConsent: func(ctx context.Context, e node.Env) (node.Service, error) {
			return consentnode.New(ctx, node.ConsentDeps(e))
		},
		config.ServiceServing: func(ctx context.Context, e node.Env) (node.Service, error) {
			s, err := servingnode.New(ctx, node.ScoringDeps(e, models))
			p.svc = s
			return s, err
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: p.reg, Services: factories})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p.node = n
	p.url = "https://" + n.Addr(config.ServiceServing)
	if role == "guest" {
		p.consentURL = "https://" + n.Addr(config.ServiceConsent)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	p.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("node did not stop within 15s")
		}
	})
	t.Cleanup(func() { p.stop() })
	return p
}

// pair starts a guest "bank" with consent and scoring, and a host
// "partner" with scoring, over mutual TLS, with features loaded and a
// purpose created.
func (f *federation) pair(t testing.TB, guest, host options) (g, h *party) {
	t.Helper()
	hostAddr := host.addr
	if hostAddr == "" {
		hostAddr = freeAddr(t)
	}
	hostURL := guest.hostURL
	if hostURL == "" {
		hostURL = "https://" + hostAddr
	}
	g = f.start(t, "bank", "guest", []config.Peer{{Name: "partner", URL: hostURL}}, guest)
	host.addr = hostAddr
	h = f.start(t, "partner", "host", []config.Peer{{Name: "bank", URL: g.url,
		ServiceURLs: map[string]string{config.ServiceConsent: g.consentURL}}}, host)
	f.loadFeatures(t, g, h)
	if _, err := g.node.Resources().Consent.CreatePurpose(context.Background(), consent.PurposeRequest{ID: purpose,
		Description: "credit risk", PolicyText: "We assess credit risk with partner data.", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	return g, h
}

// loadFeatures loads the test subjects' rows: the guest's keyed by id, the
// host's keyed by href.
func (f *federation) loadFeatures(t testing.TB, g, h *party) {
	t.Helper()
	ctx := context.Background()
	keep := map[string]bool{}
	for _, id := range f.ids {
		keep[id] = true
	}
	subset := func(file string) *bytes.Reader {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "data", file))
		if err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(bytes.NewReader(data))
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		for i := 0; ; i++ {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 || keep[rec[0]] {
				w.Write(rec)
			}
		}
		w.Flush()
		return bytes.NewReader(buf.Bytes())
	}
	if _, err := g.svc.Features.Load(ctx, "guest_credit", subset("default_credit_hetero_guest.csv"), features.LoadOptions{IgnoreColumns: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	key, _ := config.DecodeKey(f.key)
	rekeyed, err := features.RekeyCSV(subset("default_credit_hetero_host.csv"), "id", func(id string) (string, error) {
		n, err := consent.NormalizeIdentifier(id)
		if err != nil {
			return "", err
		}
		return consent.HostRef(key, "partner", n), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Features.Load(ctx, "host_credit", rekeyed, features.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// grant records a consent of subject for the host and returns it.
func (g *party) grant(t testing.TB, subject string) consent.Consent {
	t.Helper()
	c, _, err := g.node.Resources().Consent.Grant(context.Background(), consent.GrantRequest{Subject: subject, Purpose: purpose, Party: "partner",
		Categories: []string{"credit.repayment_history"}, PolicyVersion: 1, Evidence: consent.Evidence{Channel: "web", CollectedAt: time.Now().Add(-time.Minute), Collector: "test"}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (g *party) token(t testing.TB, consentID string) string {
	t.Helper()
	tok, err := g.node.Resources().Consent.IssueToken(context.Background(), consentID, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// call sends a JSON request with this party's mTLS client and decodes the
// answer into out (when not nil); it returns the status and the error code.
func (p *party) call(t testing.TB, method, url string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(data, &eb)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
	return resp.StatusCode, eb.Error.Code
}

// metric returns the value of a gauge or counter (or a histogram's count)
// with the given labels.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// row returns the raw features of id in the aligned credit tables.
func (m *model) row(t testing.TB, id string) (guest, host []float64) {
	t.Helper()
	for i, x := range m.credit.Guest.IDs {
		if x == id {
			return m.credit.Guest.X.Row(i), m.credit.Host.X.Row(i)
		}
	}
	t.Fatalf("no row for a test subject")
	return nil, nil
}

func consentHostRef(key []byte, id string) string {
	n, err := consent.NormalizeIdentifier(id)
	if err != nil {
		panic(err)
	}
	return consent.HostRef(key, "partner", n)
}
