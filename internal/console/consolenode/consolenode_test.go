package consolenode_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/console/consolenode"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
)

func TestServiceURLs(t *testing.T) {
	tlsOn := config.TLS{CertFile: "s.crt", KeyFile: "s.key"}
	for _, tt := range []struct {
		name    string
		mod     func(*config.Config)
		want    map[string]string
		wantErr bool
	}{
		{"defaults", nil, map[string]string{"consent": "http://127.0.0.1:7002", "psi": "http://127.0.0.1:7001", "serving": "http://127.0.0.1:7003"}, false},
		{"tls", func(c *config.Config) { c.TLS = tlsOn }, map[string]string{"consent": "https://127.0.0.1:7002", "psi": "https://127.0.0.1:7001", "serving": "https://127.0.0.1:7003"}, false},
		{"any address", func(c *config.Config) { c.Addrs["consent"], c.Addrs["psi"] = ":7002", "0.0.0.0:7001" },
			map[string]string{"consent": "http://127.0.0.1:7002", "psi": "http://127.0.0.1:7001", "serving": "http://127.0.0.1:7003"}, false},
		{"ipv6", func(c *config.Config) { c.Addrs["serving"] = "[::1]:7003" },
			map[string]string{"consent": "http://127.0.0.1:7002", "psi": "http://127.0.0.1:7001", "serving": "http://[::1]:7003"}, false},
		{"configured", func(c *config.Config) {
			c.Console.ConsentURL, c.Console.PSIURL, c.Console.ServingURL = "https://consent.bank.example/", "https://psi.bank.example", "https://serving.bank.example"
		}, map[string]string{"consent": "https://consent.bank.example", "psi": "https://psi.bank.example", "serving": "https://serving.bank.example"}, false},
		{"port 0 without a URL", func(c *config.Config) { c.Addrs["psi"] = "127.0.0.1:0" }, nil, true},
		// review finding N1: a console on its own (a container) defaulted
		// to 127.0.0.1 addresses where nothing listens.
		{"console alone without URLs", func(c *config.Config) { c.Services = []string{config.ServiceConsole} }, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			got, err := consolenode.ServiceURLs(cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if !tt.wantErr && !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestListener: the console listener serves its own certificate and never
// asks browsers for a client certificate, even on a node whose services
// require mutual TLS; without console.tls_cert_file it serves plain HTTP.
func TestListener(t *testing.T) {
	dir := t.TempDir()
	certs, err := pki.GenerateDev(filepath.Join(dir, "certs"), []string{"bank", "browser"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bank := certs.Parties["bank"]
	base := config.Default()
	base.Party, base.DataDir = "bank", filepath.Join(dir, "data")
	base.Services = []string{config.ServiceConsole}
	base.Addrs[config.ServiceConsole] = "127.0.0.1:0"
	base.Console.ConsentURL, base.Console.PSIURL, base.Console.ServingURL = "https://127.0.0.1:1", "https://127.0.0.1:1", "https://127.0.0.1:1"
	base.TLS = config.TLS{CertFile: bank.ServerCert, KeyFile: bank.ServerKey, CAFile: certs.CACert,
		ClientCertFile: bank.ClientCert, ClientKeyFile: bank.ClientKey, RequireClientCert: true}
	base.HTTP.ShutdownGrace = 5 * time.Second
	pool, err := pki.LoadCertPool(certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	t.Run("own certificate", func(t *testing.T) {
		cfg := base
		cfg.Console.TLSCertFile, cfg.Console.TLSKeyFile = certs.Parties["browser"].ServerCert, certs.Parties["browser"].ServerKey
		addr := run(t, cfg)
		for _, path := range []string{"/login", "/health"} {
			resp, err := browser.Get("https://" + addr + path)
			if err != nil {
				t.Fatalf("GET %s without a client certificate: %v", path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
			}
			if path == "/login" && (!strings.Contains(string(b), "<form") || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age")) {
				t.Errorf("login page over TLS: %s", resp.Header)
			}
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		addr := run(t, base)
		resp, err := http.Get("http://" + addr + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%d", resp.StatusCode)
		}
	})
	t.Run("key without certificate", func(t *testing.T) {
		cfg := base
		cfg.Console.TLSKeyFile = bank.ServerKey
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "console.tls_key_file") {
			t.Errorf("validate: %v", err)
		}
	})
}

func run(t *testing.T, cfg config.Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: prometheus.NewRegistry()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	return n.Addr(config.ServiceConsole)
}
