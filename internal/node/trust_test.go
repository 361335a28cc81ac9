package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// peerCalls are one request to each peer-facing API of a node: the PSI,
// scoring and training peer APIs and the consent introspection and
// revocation stream.
var peerCalls = []struct{ name, service, method, path, body string }{
	{"psi", config.ServicePSI, "POST", "/psi/v1/peer/sessions", `{}`},
	{"scoring", config.ServiceServing, "POST", "/score/v1/partial", `{}`},
	{"training", config.ServiceServing, "POST", "/train/v1/peer/sessions", `{}`},
	{"introspection", config.ServiceConsent, "POST", "/consent/v1/tokens/introspect", `{"token":"x"}`},
	{"revocations", config.ServiceConsent, "GET", "/consent/v1/revocations?after=0", ``},
}

// callPeerAPI makes one peer call and returns its status (only the
// headers are waited for: the revocation stream does not end).
func callPeerAPI(t *testing.T, c *http.Client, n *node.Node, method, service, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+n.Addr(service)+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func clientWith(cert tls.Certificate, roots string) *http.Client {
	pool, _ := pki.LoadCertPool(roots)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&cert, pool)}}
}

// TestPeerBoundToItsTrustAnchor reproduces finding 2 of issue 12: the
// partner trusts the bank's CA and a second institution's CA. That second
// CA issues itself a client certificate naming "bank"; the partner must
// not take it for the bank on any peer API. The partner binds the bank to
// its CA (peers[].ca_file); an SPKI pin works alike.
func TestPeerBoundToItsTrustAnchor(t *testing.T) {
	dir := t.TempDir()
	fed, err := pki.GenerateDev(filepath.Join(dir, "fed"), []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("institution C")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(dir, "c-ca.crt")
	if err := os.WriteFile(otherCA, other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	forged, err := other.IssueClient("bank")
	if err != nil {
		t.Fatal(err)
	}
	bankCert, err := pki.LoadKeyPair(fed.Parties["bank"].ClientCert, fed.Parties["bank"].ClientKey)
	if err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Party, cfg.Role = "partner", "host"
	cfg.AuthRequired = true // no loopback trust: only a peer certificate gets in
	pf := fed.Parties["partner"]
	cfg.TLS = config.TLS{CertFile: pf.ServerCert, KeyFile: pf.ServerKey, CAFile: fed.CACert + "," + otherCA,
		ClientCertFile: pf.ClientCert, ClientKeyFile: pf.ClientKey, RequireClientCert: true}

	genuine, impostor := clientWith(bankCert, fed.CACert), clientWith(forged, fed.CACert)
	anchors := map[string]config.Peer{
		"ca_file":     {Name: "bank", URL: "https://127.0.0.1:1", CAFile: fed.CACert},
		"spki_sha256": {Name: "bank", URL: "https://127.0.0.1:1", SPKI: []string{pki.SPKIFingerprint(bankCert.Leaf)}},
	}
	for anchor, peer := range anchors {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		cfg.Peers = []config.Peer{peer}
		n, _ := start(t, node.Options{Config: cfg})
		for _, c := range peerCalls {
			t.Run(anchor+"/"+c.name, func(t *testing.T) {
				if code := callPeerAPI(t, genuine, n, c.method, c.service, c.path, c.body); code == 401 || code == 403 {
					t.Errorf("the bank's own certificate: %d, want it past authentication", code)
				}
				if code := callPeerAPI(t, impostor, n, c.method, c.service, c.path, c.body); code != 401 && code != 403 {
					t.Errorf("a certificate naming bank from another institution's CA: %d, want 401 or 403", code)
				}
			})
		}
	}

	// Without an anchor of the bank's own, the two CAs are ambiguous: a
	// loud warning at start, and strict security mode refuses to start.
	t.Run("no anchor", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		cfg.Peers = []config.Peer{{Name: "bank", URL: "https://127.0.0.1:1"}}
		var logs logBuffer
		start(t, node.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		if !strings.Contains(logs.String(), `tls.ca_file holds 2 certificate authorities`) {
			t.Errorf("no warning about the ambiguous anchor of bank:\n%s", logs.String())
		}
		cfg.DataDir, cfg.SecurityMode = t.TempDir(), "strict"
		if _, err := node.New(context.Background(), node.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "no trust anchor of its own") {
			t.Errorf("strict mode started with an ambiguous anchor: %v", err)
		}
	})
}

// The single CA of a development federation (fedrisk certs init, the
// demo) needs no anchor per peer and gives no warning.
func TestSingleCAFederationNeedsNoAnchors(t *testing.T) {
	fed, err := pki.GenerateDev(t.TempDir(), []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bankCert, err := pki.LoadKeyPair(fed.Parties["bank"].ClientCert, fed.Parties["bank"].ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Party, cfg.Role, cfg.AuthRequired, cfg.SecurityMode = "partner", "host", true, "strict"
	pf := fed.Parties["partner"]
	cfg.TLS = config.TLS{CertFile: pf.ServerCert, KeyFile: pf.ServerKey, CAFile: fed.CACert,
		ClientCertFile: pf.ClientCert, ClientKeyFile: pf.ClientKey, RequireClientCert: true}
	cfg.Peers = []config.Peer{{Name: "bank", URL: "https://127.0.0.1:1"}}
	var logs logBuffer
	n, _ := start(t, node.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if strings.Contains(logs.String(), "SECURITY") {
		t.Errorf("a single-CA federation got a warning:\n%s", logs.String())
	}
	c := peerCalls[0]
	if code := callPeerAPI(t, clientWith(bankCert, fed.CACert), n, c.method, c.service, c.path, c.body); code == 401 || code == 403 {
		t.Errorf("the bank on a single-CA federation: %d", code)
	}
}

// logBuffer collects the lines of concurrent loggers.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPeerServerBoundToItsTrustAnchor: calling the partner, the bank
// verifies the server's certificate against the partner's anchor, not
// against every CA it trusts.
func TestPeerServerBoundToItsTrustAnchor(t *testing.T) {
	dir := t.TempDir()
	fed, err := pki.GenerateDev(filepath.Join(dir, "fed"), []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("institution C")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(dir, "c-ca.crt")
	if err := os.WriteFile(otherCA, other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := func(cert tls.Certificate) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	genuineCert, err := pki.LoadKeyPair(fed.Parties["partner"].ServerCert, fed.Parties["partner"].ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	forgedCert, err := other.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	sameCACert, err := fed.CA.IssueServer() // the right CA, another key
	if err != nil {
		t.Fatal(err)
	}
	genuine, forged, sameCA := serve(genuineCert), serve(forgedCert), serve(sameCACert)
	genuineCert.Leaf, _ = x509.ParseCertificate(genuineCert.Certificate[0])

	bf := fed.Parties["bank"]
	tests := []struct {
		name       string
		peer       config.Peer
		url        string
		wantRefuse bool
	}{
		{"ca_file: the partner", config.Peer{CAFile: fed.CACert}, genuine, false},
		{"ca_file: another CA's server", config.Peer{CAFile: fed.CACert}, forged, true},
		{"spki: the partner", config.Peer{SPKI: []string{pki.SPKIFingerprint(genuineCert.Leaf)}}, genuine, false},
		{"spki: another key of the same CA", config.Peer{SPKI: []string{pki.SPKIFingerprint(genuineCert.Leaf)}}, sameCA, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.TLS = config.TLS{CAFile: fed.CACert + "," + otherCA, ClientCertFile: bf.ClientCert, ClientKeyFile: bf.ClientKey}
			tt.peer.Name, tt.peer.URL = "partner", tt.url
			cfg.Peers = []config.Peer{tt.peer}
			res := nodetest.Resources(t, cfg, nodetest.Options{})
			resp, err := res.PeerClient.Get(tt.url + "/health")
			if err == nil {
				resp.Body.Close()
			}
			if refused := err != nil; refused != tt.wantRefuse {
				t.Errorf("call refused: %v (%v), want %v", refused, err, tt.wantRefuse)
			}
		})
	}
}
