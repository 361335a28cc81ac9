package node_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// TestOneKeyManagerPerProcess: a node running every service opens one key
// manager (with its KEK and signer caches), shared by all of them.
func TestOneKeyManagerPerProcess(t *testing.T) {
	reg := prometheus.NewRegistry()
	start(t, node.Options{Config: testConfig(t), Registry: reg})
	n, err := testutil.GatherAndCount(reg, "fedrisk_key_managers")
	if err != nil || n != 1 {
		t.Fatalf("fedrisk_key_managers series: %d %v", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "fedrisk_key_managers" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
				t.Fatalf("%v key managers in one process, want 1", v)
			}
		}
	}
}

// scrapeFamilies reads a /metrics answer into metric name → label sets.
func scrapeFamilies(t *testing.T, url string) map[string][]map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	out := map[string][]map[string]string{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[name] = append(out[name], labels)
		}
	}
	return out
}

// TestEachListenerShowsItsOwnSeries: a process running several services
// shows on each service's /metrics only that service's series, so an alert
// on them fires once, not once per listener; the operations listener shows
// the whole process.
func TestEachListenerShowsItsOwnSeries(t *testing.T) {
	cfg := testConfig(t)
	cfg.OpsAddr = "127.0.0.1:0"
	n, _ := start(t, node.Options{Config: cfg})
	for _, s := range config.AllServices() {
		get(t, http.DefaultClient, "http://"+n.Addr(s)+"/health") // a request series per listener
	}
	owned := map[string]string{ // a metric only one service registers → its service
		"psi_intersection_duration_seconds": config.ServicePSI,
		"model_serving_info":                config.ServiceServing,
		"training_jobs_running":             config.ServiceServing,
	}
	for _, s := range config.AllServices() {
		fams := scrapeFamilies(t, "http://"+n.Addr(s)+"/metrics")
		for _, lbls := range fams["http_requests_total"] {
			if lbls["service"] != s {
				t.Errorf("%s listener shows http_requests_total of service %q", s, lbls["service"])
			}
		}
		if len(fams["http_requests_total"]) == 0 {
			t.Errorf("%s listener shows none of its own requests", s)
		}
		for metric, owner := range owned {
			if _, ok := fams[metric]; ok != (owner == s) {
				t.Errorf("%s listener: %s shown %v, owner %s", s, metric, ok, owner)
			}
		}
		if _, ok := fams["cache_hits_total"]; !ok {
			// process-wide series (the shared cache's) stay visible on
			// every listener
			t.Errorf("%s listener lost the process-wide series", s)
		}
	}
	ops := scrapeFamilies(t, "http://"+n.Addr(node.OpsListener)+"/metrics")
	services := map[string]bool{}
	for _, lbls := range ops["http_requests_total"] {
		services[lbls["service"]] = true
	}
	for metric := range owned {
		if _, ok := ops[metric]; !ok {
			t.Errorf("ops listener lacks %s", metric)
		}
	}
	if len(services) != len(config.AllServices()) {
		t.Errorf("ops listener shows requests of %v", services)
	}
}

// TestOpsListenerWithoutClientCertificates: with mutual TLS required on
// the service listeners, probes and scrapers without a certificate reach
// /health, /ready and /metrics on the operations listener, and nothing
// else there.
func TestOpsListenerWithoutClientCertificates(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.OpsAddr = "127.0.0.1:0"
	cfg.TLS = config.TLS{CertFile: p.Parties["bank"].ServerCert, KeyFile: p.Parties["bank"].ServerKey, CAFile: p.CACert, RequireClientCert: true}
	n, _ := start(t, node.Options{Config: cfg})
	pool, _ := pki.LoadCertPool(p.CACert)
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(nil, pool)}}
	if _, err := noCert.Get("https://" + n.Addr(config.ServiceConsent) + "/health"); err == nil {
		t.Fatal("the consent listener accepted a client without a certificate")
	}
	ops := "http://" + n.Addr(node.OpsListener)
	if code, body := get(t, http.DefaultClient, ops+"/health"); code != 200 {
		t.Errorf("ops /health: %d %s", code, body)
	}
	if code, body := get(t, http.DefaultClient, ops+"/ready"); code != 200 || !strings.Contains(body, `"database"`) {
		t.Errorf("ops /ready: %d %s", code, body)
	}
	if code, body := get(t, http.DefaultClient, ops+"/metrics"); code != 200 || !strings.Contains(body, "http_requests_total") && !strings.Contains(body, "fedrisk_build_info") && !strings.Contains(body, "cache_") {
		t.Errorf("ops /metrics: %d", code)
	}
	if code, _ := get(t, http.DefaultClient, ops+"/consent/info"); code != http.StatusNotFound {
		t.Errorf("ops listener serves an API route: %d", code)
	}
}

// TestResourcesCloseInReverse: Close releases what Open opened (the
// database last), and a second Close does nothing.
func TestResourcesCloseInReverse(t *testing.T) {
	res, err := node.Open(context.Background(), testConfig(t), node.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.DB.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if err := res.DB.PingContext(context.Background()); err == nil {
		t.Error("the database is still open after Close")
	}
	if err := res.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestAdminOpenSurvivesARedisOutage (review finding N4): admin commands
// (keys rotate, audit verify, tokens) go on without Redis; a node does not
// start without it.
func TestAdminOpenSurvivesARedisOutage(t *testing.T) {
	cfg := testConfig(t)
	cfg.RedisURL = "redis://127.0.0.1:1/0" // nothing listens there
	if _, err := node.Open(context.Background(), cfg, node.OpenOptions{}); err == nil {
		t.Fatal("a node opened with its Redis down")
	}
	res, err := node.Open(context.Background(), cfg, node.OpenOptions{Admin: true})
	if err != nil {
		t.Fatalf("an admin command could not open the node's resources with Redis down: %v", err)
	}
	defer res.Close()
	if _, _, err := res.Keys.Signer(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleAloneOpensNoState (review findings N5, N6): a console-only
// process opens no database and writes no development key, and its
// browser-facing listener shows /health but neither /ready nor /metrics.
func TestConsoleAloneOpensNoState(t *testing.T) {
	cfg := testConfig(t)
	cfg.Services = []string{config.ServiceConsole}
	cfg.Addrs[config.ServiceConsole] = "127.0.0.1:0"
	cfg.Console.ConsentURL, cfg.Console.PSIURL, cfg.Console.ServingURL = "http://127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:1"
	n, _ := start(t, node.Options{Config: cfg})
	if n.DB() != nil {
		t.Error("a console-only node opened a database")
	}
	if entries, _ := os.ReadDir(cfg.DataDir); len(entries) != 0 {
		t.Errorf("a console-only node wrote into its data directory: %v", entries)
	}
	base := "http://" + n.Addr(config.ServiceConsole)
	if code, _ := get(t, http.DefaultClient, base+"/health"); code != 200 {
		t.Errorf("console /health: %d", code)
	}
	for _, p := range []string{"/metrics", "/ready"} {
		if code, body := get(t, http.DefaultClient, base+p); code == 200 && (strings.Contains(body, "http_requests_total") || strings.Contains(body, `"checks"`)) {
			t.Errorf("the console's browser-facing listener serves %s", p)
		}
	}
}
