package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// testConfig is the default configuration on free loopback ports.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil { // t.TempDir follows the umask
		t.Fatal(err)
	}
	for _, s := range config.AllServices() {
		cfg.Addrs[s] = "127.0.0.1:0"
	}
	cfg.HTTP.ShutdownGrace = 5 * time.Second
	return cfg
}

// start runs a node in the background and returns it once it listens, with
// a stop function that cancels it and returns Serve's result (idempotent).
func start(t *testing.T, opts node.Options) (*node.Node, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("node did not stop within 10s")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return n, stop
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServesEveryServiceOnEmbeddedDefaults(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := start(t, node.Options{Config: testConfig(t), Registry: reg, Build: "test"})
	for _, svc := range config.AllServices() {
		base := "http://" + n.Addr(svc)
		t.Run(svc, func(t *testing.T) {
			if code, body := get(t, http.DefaultClient, base+"/health"); code != 200 {
				t.Errorf("health %d %s", code, body)
			}
			if code, body := get(t, http.DefaultClient, base+"/ready"); code != 200 || !strings.Contains(body, `"database"`) || !strings.Contains(body, `"cache"`) {
				t.Errorf("ready %d %s", code, body)
			}
			code, body := get(t, http.DefaultClient, base+"/metrics")
			if code != 200 {
				t.Fatalf("metrics %d", code)
			}
			for _, want := range []string{
				fmt.Sprintf(`http_requests_total{method="GET",route="/health",service="%s",status="200"} 1`, svc),
				fmt.Sprintf(`http_request_duration_seconds_bucket{method="GET",route="/ready",service="%s",le="0.5"} 1`, svc),
				fmt.Sprintf(`request_queue_length{service="%s"} 1`, svc), // the scrape itself
				`cache_hits_total{class="user_features"} 0`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	}
	prefixes := map[string]string{"consent": "/consent", "psi": "/psi", "serving": "/score"}
	for svc, prefix := range prefixes {
		code, body := get(t, http.DefaultClient, "http://"+n.Addr(svc)+prefix+"/info")
		var info node.Info
		if code != 200 || json.Unmarshal([]byte(body), &info) != nil || info.Party != "bank" || info.SchemaVersion < 1 {
			t.Errorf("%s info: %d %s", svc, code, body)
		}
	}
}

func TestOnlySelectedServices(t *testing.T) {
	cfg := testConfig(t)
	cfg.Services = []string{config.ServicePSI}
	n, _ := start(t, node.Options{Config: cfg})
	if n.Addr(config.ServicePSI) == "" || n.Addr(config.ServiceConsent) != "" {
		t.Errorf("addrs: psi %q consent %q", n.Addr(config.ServicePSI), n.Addr(config.ServiceConsent))
	}
}

func TestRefusesAnotherPartysDatabase(t *testing.T) {
	cfg := testConfig(t)
	_, stop := start(t, node.Options{Config: cfg})
	stop()
	cfg.Party = "partner"
	_, err := node.New(context.Background(), node.Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), `belongs to party "bank"`) {
		t.Fatalf("got %v", err)
	}
}

func TestMigrateOnStartOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.MigrateOnStart = false
	_, err := node.New(context.Background(), node.Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "fedrisk migrate") {
		t.Fatalf("unmigrated database accepted: %v", err)
	}
}

// slowService answers GET /slow after a delay, to test graceful shutdown.
type slowService struct{ started chan struct{} }

func (s slowService) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /psi/slow", func(w http.ResponseWriter, r *http.Request) {
		close(s.started)
		time.Sleep(500 * time.Millisecond)
		fmt.Fprint(w, "finished")
	})
}
func (slowService) Close() error { return nil }

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	cfg := testConfig(t)
	cfg.Services = []string{config.ServicePSI}
	svc := slowService{started: make(chan struct{})}
	n, stop := start(t, node.Options{Config: cfg, Services: map[string]node.Factory{
		config.ServicePSI: func(context.Context, node.Env) (node.Service, error) { return svc, nil },
	}})
	addr := n.Addr(config.ServicePSI)
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/psi/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-svc.started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	if got := <-result; got != "200 finished" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve = %v, want nil after a graceful shutdown", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.GenerateDev(dir, []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The partner node is a peer of the bank node.
	partnerCfg := testConfig(t)
	partnerCfg.Party, partnerCfg.Role = "partner", "host"
	partnerCfg.Services = []string{config.ServiceServing}
	partnerCfg.TLS = config.TLS{CertFile: p.Parties["partner"].ServerCert, KeyFile: p.Parties["partner"].ServerKey, CAFile: p.CACert,
		ClientCertFile: p.Parties["partner"].ClientCert, ClientKeyFile: p.Parties["partner"].ClientKey, RequireClientCert: true}
	partner, stopPartner := start(t, node.Options{Config: partnerCfg})

	bankCfg := testConfig(t)
	bankCfg.Services = []string{config.ServiceConsent}
	bankCfg.TLS = config.TLS{CertFile: p.Parties["bank"].ServerCert, KeyFile: p.Parties["bank"].ServerKey, CAFile: p.CACert,
		ClientCertFile: p.Parties["bank"].ClientCert, ClientKeyFile: p.Parties["bank"].ClientKey, RequireClientCert: true}
	bankCfg.Peers = []config.Peer{{Name: "partner", URL: "https://" + partner.Addr(config.ServiceServing)}}
	bank, _ := start(t, node.Options{Config: bankCfg})

	clientCert, err := pki.LoadKeyPair(p.Parties["bank"].ClientCert, p.Parties["bank"].ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := pki.LoadCertPool(p.CACert)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&clientCert, pool)}}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(nil, pool)}}

	bankURL := "https://" + bank.Addr(config.ServiceConsent)
	if code, body := get(t, withCert, bankURL+"/ready"); code != 200 || !strings.Contains(body, "peer:partner") {
		t.Errorf("ready over mTLS with a live peer: %d %s", code, body)
	}
	if _, err := noCert.Get(bankURL + "/health"); err == nil {
		t.Error("a client without a certificate was accepted")
	}
	// The peer goes away: /ready names it as degraded but stays 200 — the
	// partner's outage must not take the bank's own services (a consent
	// withdrawal) out of its load balancer — and /health stays 200.
	stopPartner()
	code, body := get(t, withCert, bankURL+"/ready")
	if code != 200 || !strings.Contains(body, `"degraded":["peer:partner"]`) {
		t.Errorf("ready with a dead peer: %d %s", code, body)
	}
	if code, _ := get(t, withCert, bankURL+"/health"); code != 200 {
		t.Errorf("health with a dead peer: %d", code)
	}
}

func TestPostgresAndRedis(t *testing.T) {
	rd := os.Getenv("FEDRISK_TEST_REDIS_URL")
	if rd == "" {
		t.Skip("FEDRISK_TEST_REDIS_URL not set")
	}
	cfg := testConfig(t)
	cfg.DatabaseURL = sqldbtest.PostgresURL(t) // skips without FEDRISK_TEST_POSTGRES_URL
	cfg.RedisURL = rd
	n, _ := start(t, node.Options{Config: cfg})
	if code, body := get(t, http.DefaultClient, "http://"+n.Addr(config.ServiceConsent)+"/ready"); code != 200 {
		t.Errorf("ready on PostgreSQL and Redis: %d %s", code, body)
	}
	if n.DB().Dialect != "postgres" {
		t.Errorf("dialect %s", n.DB().Dialect)
	}
	if code, body := get(t, http.DefaultClient, "http://"+n.Addr(config.ServiceConsent)+"/consent/info"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"schema_version":%d`, sqldb.Latest())) {
		t.Errorf("info on PostgreSQL: %d %s", code, body)
	}
}

// TestRedisOutageAndRecovery runs a private redis-server, stops it and
// starts it again: /ready turns 503 naming the cache while /health stays 200,
// then recovers without a restart.
func TestRedisOutageAndRecovery(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	port := freePort(t)
	startRedis := func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitPort(t, port)
		return cmd
	}
	redis := startRedis()
	defer func() { redis.Process.Kill(); redis.Wait() }()

	cfg := testConfig(t)
	cfg.Services = []string{config.ServiceServing}
	cfg.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	n, _ := start(t, node.Options{Config: cfg})
	base := "http://" + n.Addr(config.ServiceServing)
	if code, body := get(t, http.DefaultClient, base+"/ready"); code != 200 {
		t.Fatalf("ready %d %s", code, body)
	}
	redis.Process.Kill()
	redis.Wait()
	code, body := get(t, http.DefaultClient, base+"/ready")
	if code != 503 || !strings.Contains(body, "cache failed") {
		t.Errorf("ready with Redis down: %d %s", code, body)
	}
	if code, _ := get(t, http.DefaultClient, base+"/health"); code != 200 {
		t.Errorf("health with Redis down: %d", code)
	}
	redis = startRedis()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = get(t, http.DefaultClient, base+"/ready")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("port %d never opened", port)
}
