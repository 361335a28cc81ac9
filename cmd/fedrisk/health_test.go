package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/health"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// startHealthNode runs a node with every service on 127.0.0.1:0 and
// returns its configuration with the bound addresses.
func startHealthNode(t *testing.T, edit func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	for _, s := range config.AllServices() {
		cfg.Addrs[s] = "127.0.0.1:0"
	}
	cfg.HTTP.ShutdownGrace = 3 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: prometheus.NewRegistry()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, s := range cfg.Services {
		cfg.Addrs[s] = n.Addr(s)
	}
	return cfg
}

// addrFlags are the config flags that point `health` at cfg's listeners.
func addrFlags(cfg config.Config) []string {
	return []string{"--consent-addr", cfg.Addrs[config.ServiceConsent], "--psi-addr", cfg.Addrs[config.ServicePSI],
		"--serving-addr", cfg.Addrs[config.ServiceServing]}
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func decodeReport(t *testing.T, out string) health.Report {
	t.Helper()
	var rep health.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("health --json output is not a report: %v\n%s", err, out)
	}
	return rep
}

func TestHealthHealthyNode(t *testing.T) {
	cfg := startHealthNode(t, nil)
	args := append([]string{"health", "--json"}, addrFlags(cfg)...)
	env := map[string]string{}
	wantChecks := 6
	if u := os.Getenv("FEDRISK_TEST_POSTGRES_URL"); u != "" {
		env["DATABASE_URL"] = u
		wantChecks++
	}
	if u := os.Getenv("FEDRISK_TEST_REDIS_URL"); u != "" {
		env["REDIS_URL"] = u
		wantChecks++
	}
	code, out, stderr := runCLI(t, env, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	rep := decodeReport(t, out)
	if !rep.Healthy || rep.Checked != wantChecks || len(rep.Failures) != 0 {
		t.Errorf("report: %+v, want %d healthy checks", rep, wantChecks)
	}
	for _, name := range []string{"consent-service /health", "psi-service /ready", "model-serving /ready"} {
		if !slices.ContainsFunc(rep.Results, func(r health.Result) bool { return r.Name == name && r.OK }) {
			t.Errorf("no healthy %q in %+v", name, rep.Results)
		}
	}
	if _, ok := env["DATABASE_URL"]; ok && !slices.ContainsFunc(rep.Results, func(r health.Result) bool {
		return r.Name == "postgresql" && r.OK && strings.HasPrefix(r.Detail, "PostgreSQL ")
	}) {
		t.Errorf("postgresql not checked: %+v", rep.Results)
	}
	if _, ok := env["REDIS_URL"]; ok && !slices.ContainsFunc(rep.Results, func(r health.Result) bool { return r.Name == "redis" && r.Detail == "PONG" }) {
		t.Errorf("redis not checked: %+v", rep.Results)
	}

	code, out, _ = runCLI(t, nil, append([]string{"health"}, addrFlags(cfg)...)...)
	if code != 0 || !strings.Contains(out, "✅ psi-service /health") || !strings.Contains(out, "all 6 checks healthy") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}
}

func TestHealthStoppedPSIListener(t *testing.T) {
	cfg := startHealthNode(t, nil)
	cfg.Addrs[config.ServicePSI] = closedAddr(t)
	args := append([]string{"health", "--json"}, addrFlags(cfg)...)
	code, out, stderr := runCLI(t, nil, args...)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d: %s", code, exitFailure, stderr)
	}
	rep := decodeReport(t, out)
	if rep.Healthy || !slices.Equal(rep.Failures, []string{"psi-service /health", "psi-service /ready"}) {
		t.Errorf("failures %v, want the psi-service listener", rep.Failures)
	}
	if !strings.Contains(stderr, "psi-service /health") {
		t.Errorf("stderr does not name the failed listener: %q", stderr)
	}
	code, out, _ = runCLI(t, nil, append([]string{"health"}, addrFlags(cfg)...)...)
	if code != exitFailure || !strings.Contains(out, "❌ psi-service /health") || !strings.Contains(out, "2 of 6 checks failed") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}
}

func TestHealthDependencyDown(t *testing.T) {
	cfg := startHealthNode(t, nil)
	env := map[string]string{
		"DATABASE_URL": "postgres://fedrisk:s3cret-pw@" + closedAddr(t) + "/federated_risk?sslmode=disable&connect_timeout=2",
		"REDIS_URL":    "redis://:s3cret-pw@" + closedAddr(t) + "/0",
	}
	code, out, _ := runCLI(t, env, append([]string{"health", "--json", "--timeout", "2s"}, addrFlags(cfg)...)...)
	rep := decodeReport(t, out)
	if code != exitFailure || !slices.Equal(rep.Failures, []string{"postgresql", "redis"}) {
		t.Errorf("exit %d, failures %v; want postgresql and redis", code, rep.Failures)
	}
	if strings.Contains(out, "s3cret-pw") {
		t.Errorf("a password reached the report:\n%s", out)
	}
}

// TestHealthMutualTLS: a node requiring client certificates is healthy
// through the configured client certificate and unhealthy without it.
func TestHealthMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := p.Parties["bank"]
	cfg := startHealthNode(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: f.ServerCert, KeyFile: f.ServerKey, CAFile: p.CACert, RequireClientCert: true}
	})
	tlsFlags := []string{"--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-ca", p.CACert}
	args := append(append([]string{"health", "--json"}, addrFlags(cfg)...), tlsFlags...)
	code, out, stderr := runCLI(t, nil, append(args, "--tls-client-cert", f.ClientCert, "--tls-client-key", f.ClientKey)...)
	if code != 0 {
		t.Fatalf("with the client certificate: exit %d: %s\n%s", code, stderr, out)
	}
	if rep := decodeReport(t, out); !strings.HasPrefix(rep.Results[0].Target, "https://127.0.0.1:") {
		t.Errorf("target %q is not https", rep.Results[0].Target)
	}
	code, out, _ = runCLI(t, nil, args...)
	if rep := decodeReport(t, out); code != exitFailure || len(rep.Failures) != 6 {
		t.Errorf("without a client certificate: exit %d, failures %v; want all 6", code, rep.Failures)
	}
}

// TestHealthTokenAndStack: the token goes to fedrisk listeners (with
// AUTH_REQUIRED on), never to the monitoring stack, which is checked at the
// given URLs; Grafana counts only with its database ok.
func TestHealthTokenAndStack(t *testing.T) {
	cfg := startHealthNode(t, func(c *config.Config) { c.AuthRequired = true })
	var leaked []string
	stack := func(path, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				leaked = append(leaked, r.URL.Path)
			}
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	prom := stack("/-/healthy", "Prometheus Server is Healthy.\n")
	am := stack("/-/healthy", "OK")
	grafanaOK := stack("/api/health", `{"database":"ok","version":"11.0.0"}`)
	grafanaBad := stack("/api/health", `{"database":"failing"}`)
	base := append([]string{"health", "--json", "--prometheus-url", prom, "--alertmanager-url", am}, addrFlags(cfg)...)
	code, out, stderr := runCLI(t, map[string]string{"FEDRISK_TOKEN": "frt_test", "AUTH_REQUIRED": "true"}, append(base, "--grafana-url", grafanaOK)...)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	if rep := decodeReport(t, out); rep.Checked != 9 {
		t.Errorf("checked %d, want 6 listeners + 3 monitoring", rep.Checked)
	}
	if len(leaked) > 0 {
		t.Errorf("token sent to the monitoring stack: %v", leaked)
	}
	code, out, _ = runCLI(t, nil, append(base, "--grafana-url", grafanaBad)...)
	if rep := decodeReport(t, out); code != exitFailure || !slices.Equal(rep.Failures, []string{"grafana"}) {
		t.Errorf("failing Grafana database: exit %d, failures %v", code, rep.Failures)
	}
}

// TestHealthOnlyAndLiveness: the container healthcheck form checks its own
// listener only, and a selection that matches nothing never passes.
func TestHealthOnlyAndLiveness(t *testing.T) {
	cfg := startHealthNode(t, nil)
	code, out, stderr := runCLI(t, nil, append([]string{"health", "--json", "--liveness", "--only", "psi-service"}, addrFlags(cfg)...)...)
	rep := decodeReport(t, out)
	if code != 0 || rep.Checked != 1 || rep.Results[0].Name != "psi-service /health" {
		t.Errorf("exit %d (%s), report %+v; want psi-service /health alone", code, stderr, rep)
	}
	code, _, stderr = runCLI(t, nil, append([]string{"health", "--only", "ops"}, addrFlags(cfg)...)...)
	if code == 0 || !strings.Contains(stderr, "ops") {
		t.Errorf("--only ops without an ops listener: exit %d %q", code, stderr)
	}
	if code, _, _ := runCLI(t, nil, "health", "--timeout", "0s"); code != exitBadUsage {
		t.Errorf("--timeout 0: exit %d", code)
	}
	// The ops listener named by the configuration is probed over plain HTTP.
	cfgFile := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(cfgFile, []byte("listen:\n  ops: "+closedAddr(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, nil, append([]string{"health", "--json", "--liveness", "--only", "ops", "--config", cfgFile}, addrFlags(cfg)...)...)
	if rep := decodeReport(t, out); code != exitFailure || !slices.Equal(rep.Failures, []string{"ops /health"}) || !strings.HasPrefix(rep.Results[0].Target, "http://127.0.0.1:") {
		t.Errorf("closed ops listener: exit %d, %+v", code, rep)
	}
}

// TestHealthPeerOwnCA: a peer whose CA is only in its peers[].ca_file
// (the trust model of two institutions) is probed through that CA.
func TestHealthPeerOwnCA(t *testing.T) {
	partnerPKI, err := pki.GenerateDev(t.TempDir(), []string{"partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bankPKI, err := pki.GenerateDev(t.TempDir(), []string{"bank"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pf := partnerPKI.Parties["partner"]
	partner := startHealthNode(t, func(c *config.Config) {
		c.Party, c.Role = "partner", "host"
		c.TLS = config.TLS{CertFile: pf.ServerCert, KeyFile: pf.ServerKey}
	})
	peer := "partner=https://" + partner.Addrs[config.ServiceConsent] + ";ca_file=" + partnerPKI.CACert
	code, out, stderr := runCLI(t, nil, "health", "--json", "--only", "peer:partner", "--tls-ca", bankPKI.CACert, "--peer", peer)
	if code != 0 {
		t.Errorf("peer probed through its own CA: exit %d: %s\n%s", code, stderr, out)
	}
}
