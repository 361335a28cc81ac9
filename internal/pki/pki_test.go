package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/pki"
)

// newMTLSServer starts an HTTPS server on 127.0.0.1 that answers with the
// caller's party name. hits counts requests that reached the handler.
func newMTLSServer(t *testing.T, cfg *tls.Config, hits *int) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		party, err := pki.PeerParty(r.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, party)
	}))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// get performs one request over a fresh connection.
func get(srv *httptest.Server, cfg *tls.Config) (*http.Response, string, error) {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// forceCert makes the client send cert even when the server's list of
// acceptable CAs does not include its issuer (crypto/tls would otherwise send
// no certificate at all).
func forceCert(cfg *tls.Config, cert *tls.Certificate) *tls.Config {
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	return cfg
}

func mustLoad(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	c, err := pki.LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDevPKIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	dev, err := pki.GenerateDev(dir, []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.LoadCertPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	serverCert := mustLoad(t, filepath.Join(dir, "partner", "server.crt"), filepath.Join(dir, "partner", "server.key"))
	bankClient := mustLoad(t, filepath.Join(dir, "bank", "client.crt"), filepath.Join(dir, "bank", "client.key"))
	partnerClient := mustLoad(t, dev.Parties["partner"].ClientCert, dev.Parties["partner"].ClientKey)
	bankServer := mustLoad(t, dev.Parties["bank"].ServerCert, dev.Parties["bank"].ServerKey)

	otherCA, err := pki.NewCA("other institution")
	if err != nil {
		t.Fatal(err)
	}
	foreignBank, err := otherCA.IssueClient("bank")
	if err != nil {
		t.Fatal(err)
	}

	var hits int
	srv := newMTLSServer(t, pki.ServerConfig(serverCert, pool, true), &hits)

	t.Run("bank client cert", func(t *testing.T) {
		resp, body, err := get(srv, pki.ClientConfig(&bankClient, pool))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || body != "bank" {
			t.Fatalf("got %d %q, want 200 \"bank\"", resp.StatusCode, body)
		}
		if resp.TLS.Version != tls.VersionTLS13 {
			t.Errorf("negotiated TLS version %x, want TLS 1.3", resp.TLS.Version)
		}
		// The client can tell which party it reached from the server certificate.
		if got, err := pki.PeerParty(resp.TLS); err != nil || got != "partner" {
			t.Errorf("server party = %q, %v; want partner", got, err)
		}
	})
	t.Run("TLS 1.2 client", func(t *testing.T) {
		cfg := pki.ClientConfig(&bankClient, pool)
		cfg.MaxVersion = tls.VersionTLS12
		resp, body, err := get(srv, cfg)
		if err != nil || body != "bank" || resp.TLS.Version != tls.VersionTLS12 {
			t.Fatalf("TLS 1.2: %v %q", err, body)
		}
	})

	refused := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client cert", pki.ClientConfig(nil, pool)},
		{"client cert from another CA", pki.ClientConfig(&foreignBank, pool)},
		{"client cert from another CA, sent anyway", forceCert(pki.ClientConfig(nil, pool), &foreignBank)},
		{"server cert used as client cert", pki.ClientConfig(&bankServer, pool)},
		{"TLS 1.1", func() *tls.Config {
			c := pki.ClientConfig(&bankClient, pool)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}()},
		{"server not trusted", pki.ClientConfig(&bankClient, otherCA.Pool())},
		{"nil root pool trusts nothing", pki.ClientConfig(&bankClient, nil)},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := hits
			if _, _, err := get(srv, tc.cfg); err == nil {
				t.Fatal("request succeeded, want TLS failure")
			}
			if hits != before {
				t.Fatal("handler was reached")
			}
		})
	}

	t.Run("allowlist in handshake", func(t *testing.T) {
		allow, err := pki.NewAllowlist("partner")
		if err != nil {
			t.Fatal(err)
		}
		cfg := pki.ServerConfig(serverCert, pool, true)
		cfg.VerifyConnection = allow.VerifyConnection
		var hits int
		srv := newMTLSServer(t, cfg, &hits)
		if _, _, err := get(srv, pki.ClientConfig(&bankClient, pool)); err == nil {
			t.Error("bank admitted, want refused")
		}
		if _, body, err := get(srv, pki.ClientConfig(&partnerClient, pool)); err != nil || body != "partner" {
			t.Errorf("partner: %q, %v", body, err)
		}
		if hits != 1 {
			t.Errorf("handler reached %d times, want 1", hits)
		}
	})

	t.Run("optional client cert", func(t *testing.T) {
		var hits int
		srv := newMTLSServer(t, pki.ServerConfig(serverCert, pool, false), &hits)
		resp, _, err := get(srv, pki.ClientConfig(nil, pool))
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous: %v, want 401 from handler", err)
		}
		if _, body, err := get(srv, pki.ClientConfig(&bankClient, pool)); err != nil || body != "bank" {
			t.Errorf("bank: %q, %v", body, err)
		}
		if _, _, err := get(srv, forceCert(pki.ClientConfig(nil, pool), &foreignBank)); err == nil {
			t.Error("unverifiable client cert accepted")
		}
	})
}

// TestOneCAPerInstitution is the production setup: each party has its own CA
// and every node trusts the exchanged CA certificates.
func TestOneCAPerInstitution(t *testing.T) {
	dir := t.TempDir()
	var caFiles []string
	cas := map[string]*pki.CA{}
	for _, name := range []string{"bank", "partner", "stranger"} {
		ca, err := pki.NewCA(name + " CA")
		if err != nil {
			t.Fatal(err)
		}
		cas[name] = ca
		f := filepath.Join(dir, name+"-ca.crt")
		if err := os.WriteFile(f, ca.CertPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		if name != "stranger" {
			caFiles = append(caFiles, f)
		}
	}
	pool, err := pki.LoadCertPool(caFiles...)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := cas["bank"].IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	var hits int
	srv := newMTLSServer(t, pki.ServerConfig(serverCert, cas["bank"].Pool(), true), &hits)
	// The bank's server trusts the partner only once it holds the partner's CA.
	srvFederated := newMTLSServer(t, pki.ServerConfig(serverCert, pool, true), &hits)

	for _, party := range []string{"bank", "partner", "stranger"} {
		c, err := cas[party].IssueClient(party)
		if err != nil {
			t.Fatal(err)
		}
		_, body, err := get(srvFederated, pki.ClientConfig(&c, cas["bank"].Pool()))
		if want := party != "stranger"; (err == nil) != want || (want && body != party) {
			t.Errorf("%s via federated pool: body %q err %v, want admitted=%v", party, body, err, want)
		}
		_, _, err = get(srv, pki.ClientConfig(&c, cas["bank"].Pool()))
		if want := party == "bank"; (err == nil) != want {
			t.Errorf("%s via bank-only pool: err %v, want admitted=%v", party, err, want)
		}
	}
}

func TestGenerateDevFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	dev, err := pki.GenerateDev(dir, []string{"bank", "partner"}, pki.DevOptions{
		Validity: 48 * time.Hour,
		Hosts:    []string{"bank.federated-risk.local", "10.0.0.7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{
		dir: 0o700, dev.CACert: 0o644, dev.CAKey: 0o600,
		filepath.Join(dir, "bank"): 0o700, filepath.Join(dir, "partner"): 0o700,
	}
	for _, pf := range dev.Parties {
		modes[pf.ServerCert], modes[pf.ClientCert] = 0o644, 0o644
		modes[pf.ServerKey], modes[pf.ClientKey] = 0o600, 0o600
	}
	for path, want := range modes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}

	serials := map[string]bool{}
	leaf := func(path string) *x509.Certificate {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(data, mustRead(t, strings.TrimSuffix(path, ".crt")+".key"))
		if err != nil {
			t.Fatal(err)
		}
		s := c.Leaf.SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 || serials[s.String()] {
			t.Errorf("%s: bad or repeated serial %v", path, s)
		}
		serials[s.String()] = true
		if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
			t.Errorf("%s: key is %T, want ECDSA", path, c.PrivateKey)
		}
		if d := time.Until(c.Leaf.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
			t.Errorf("%s: expires in %v, want 48h", path, d)
		}
		return c.Leaf
	}
	ca := leaf(dev.CACert)
	if !ca.IsCA {
		t.Error("ca.crt is not a CA")
	}
	cli := leaf(dev.Parties["bank"].ClientCert)
	if cli.Subject.CommonName != "bank" || len(cli.URIs) != 1 || cli.URIs[0].String() != "fedrisk://party/bank" ||
		!slices.Equal(cli.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client cert: CN %q URIs %v EKU %v", cli.Subject.CommonName, cli.URIs, cli.ExtKeyUsage)
	}
	srv := leaf(dev.Parties["bank"].ServerCert)
	if !slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server EKU %v", srv.ExtKeyUsage)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "bank", "bank.federated-risk.local", "10.0.0.7"} {
		if err := srv.VerifyHostname(host); err != nil {
			t.Errorf("server cert: %v", err)
		}
	}
	if err := srv.VerifyHostname("partner"); err == nil {
		t.Error("bank's server cert is valid for partner")
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: dev.CA.Pool()}); err != nil {
		t.Errorf("server cert does not chain to the CA: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateDevRefusesOverwrite(t *testing.T) {
	t.Run("whole PKI", func(t *testing.T) {
		dir := t.TempDir()
		dev, err := pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := mustRead(t, dev.CACert)
		_, err = pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{})
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), dev.CACert) {
			t.Fatalf("second run: %v, want ErrExist naming %s", err, dev.CACert)
		}
		if string(mustRead(t, dev.CACert)) != string(before) {
			t.Fatal("ca.crt changed")
		}
		// Force replaces everything and tightens loosened key permissions.
		if err := os.Chmod(dev.Parties["bank"].ClientKey, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		if string(mustRead(t, dev.CACert)) == string(before) {
			t.Error("Force did not replace ca.crt")
		}
		if fi, err := os.Stat(dev.Parties["bank"].ClientKey); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("client.key after Force: %v %v, want 0600", fi.Mode(), err)
		}
	})
	t.Run("one file, nothing written", func(t *testing.T) {
		dir := t.TempDir()
		existing := filepath.Join(dir, "partner", "client.key")
		if err := os.MkdirAll(filepath.Dir(existing), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := pki.GenerateDev(dir, []string{"bank", "partner"}, pki.DevOptions{})
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), existing) {
			t.Fatalf("got %v, want ErrExist naming %s", err, existing)
		}
		if _, err := os.Stat(filepath.Join(dir, "ca.crt")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ca.crt written despite refusal: %v", err)
		}
	})
}

func TestGenerateDevRSA(t *testing.T) {
	dir := t.TempDir()
	dev, err := pki.GenerateDev(dir, []string{"bank"}, pki.DevOptions{KeyType: pki.RSA, RSABits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, dev.Parties["bank"].ClientCert, dev.Parties["bank"].ClientKey)
	if k, ok := c.PrivateKey.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("key %T, want 2048-bit RSA", c.PrivateKey)
	}
	s := mustLoad(t, dev.Parties["bank"].ServerCert, dev.Parties["bank"].ServerKey)
	var hits int
	srv := newMTLSServer(t, pki.ServerConfig(s, dev.CA.Pool(), true), &hits)
	if _, body, err := get(srv, pki.ClientConfig(&c, dev.CA.Pool())); err != nil || body != "bank" {
		t.Fatalf("RSA handshake: %q, %v", body, err)
	}
}

func TestGenerateDevBadInput(t *testing.T) {
	tests := []struct {
		name    string
		parties []string
		opts    pki.DevOptions
		want    string
	}{
		{"no parties", nil, pki.DevOptions{}, "no parties"},
		{"empty name", []string{""}, pki.DevOptions{}, "invalid party name"},
		{"uppercase", []string{"Bank"}, pki.DevOptions{}, "invalid party name"},
		{"underscore", []string{"bank_1"}, pki.DevOptions{}, "invalid party name"},
		{"dot", []string{"bank.cn"}, pki.DevOptions{}, "invalid party name"},
		{"path", []string{"../etc"}, pki.DevOptions{}, "invalid party name"},
		{"non-ASCII", []string{"bänk"}, pki.DevOptions{}, "invalid party name"},
		{"leading dash", []string{"-bank"}, pki.DevOptions{}, "invalid party name"},
		{"trailing dash", []string{"bank-"}, pki.DevOptions{}, "invalid party name"},
		{"64 chars", []string{strings.Repeat("a", 64)}, pki.DevOptions{}, "invalid party name"},
		{"duplicate", []string{"bank", "bank"}, pki.DevOptions{}, "twice"},
		{"negative validity", []string{"bank"}, pki.DevOptions{Validity: -time.Hour}, "validity"},
		{"small RSA", []string{"bank"}, pki.DevOptions{KeyType: pki.RSA, RSABits: 1024}, "RSA key size"},
		{"unknown key type", []string{"bank"}, pki.DevOptions{KeyType: "dsa"}, "unknown key type"},
		{"empty host", []string{"bank"}, pki.DevOptions{Hosts: []string{""}}, "invalid host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := pki.GenerateDev(dir, tc.parties, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("files written despite error: %v", entries)
			}
		})
	}
	for _, ok := range []string{"a", "bank-2", "0", strings.Repeat("z", 63)} {
		if err := pki.CheckPartyName(ok); err != nil {
			t.Errorf("CheckPartyName(%q) = %v", ok, err)
		}
	}
	if err := pki.CheckPartyName("Bank"); !errors.Is(err, pki.ErrInvalidPartyName) {
		t.Errorf("CheckPartyName error %v does not wrap ErrInvalidPartyName", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	dev, err := pki.GenerateDev(dir, []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing.pem")
	garbage := write("garbage.pem", "not a certificate\n")
	badDER := write("bad-der.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	bank := dev.Parties["bank"]
	keyInCerts := write("mixed.pem", string(mustRead(t, dev.CACert))+string(mustRead(t, bank.ClientKey)))

	pairs := []struct {
		name, cert, key string
		want            []string
	}{
		{"missing cert", missing, bank.ClientKey, []string{missing, "no such file"}},
		{"missing key", bank.ClientCert, missing, []string{missing, "no such file"}},
		{"garbage cert", garbage, bank.ClientKey, []string{garbage, "no PEM-encoded certificate"}},
		{"bad DER", badDER, bank.ClientKey, []string{badDER, "PEM block 1"}},
		{"garbage key", bank.ClientCert, garbage, []string{garbage, "no PEM-encoded private key"}},
		{"key is a cert", bank.ClientCert, bank.ClientCert, []string{bank.ClientCert, "certificate rather than a key"}},
		{"key of another party", bank.ClientCert, dev.Parties["partner"].ClientKey, []string{"does not match"}},
		{"key in cert file", keyInCerts, bank.ClientKey, []string{keyInCerts, `"PRIVATE KEY"`}},
	}
	for _, tc := range pairs {
		t.Run("LoadKeyPair/"+tc.name, func(t *testing.T) {
			_, err := pki.LoadKeyPair(tc.cert, tc.key)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want error containing %q", err, w)
				}
			}
		})
	}

	pools := []struct {
		name  string
		files []string
		want  string
	}{
		{"none", nil, "no CA certificate files"},
		{"missing", []string{dev.CACert, missing}, missing},
		{"garbage", []string{dev.CACert, garbage}, garbage},
		{"empty", []string{write("empty.pem", "")}, "no PEM-encoded certificate"},
		{"key file", []string{dev.CAKey}, dev.CAKey},
		{"key mixed in", []string{keyInCerts}, `"PRIVATE KEY"`},
	}
	for _, tc := range pools {
		t.Run("LoadCertPool/"+tc.name, func(t *testing.T) {
			if _, err := pki.LoadCertPool(tc.files...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}

	t.Run("LoadCertPool/text around blocks", func(t *testing.T) {
		f := write("annotated.pem", "Subject: fedrisk development CA\n"+string(mustRead(t, dev.CACert))+"\n# end\n")
		if _, err := pki.LoadCertPool(f); err != nil {
			t.Fatal(err)
		}
	})
}

// selfSigned returns a certificate with the given identity fields, as
// PeerParty sees it after verification.
func selfSigned(t *testing.T, cn string, uris ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPeerPartyAndAllowlist(t *testing.T) {
	verified := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	tests := []struct {
		name    string
		cs      *tls.ConnectionState
		want    string
		wantErr error
		allowed bool // by an allowlist of bank
	}{
		{"nil state", nil, "", pki.ErrNoClientCert, false},
		{"unverified peer cert", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{selfSigned(t, "bank")}}, "", pki.ErrNoClientCert, false},
		{"URI wins over CN", verified(selfSigned(t, "partner", "https://example.com/x", "fedrisk://party/bank")), "bank", nil, true},
		{"CN fallback", verified(selfSigned(t, "bank")), "bank", nil, true},
		{"other party", verified(selfSigned(t, "", "fedrisk://party/partner")), "partner", nil, false},
		{"same URI twice", verified(selfSigned(t, "", "fedrisk://party/bank", "fedrisk://party/bank")), "bank", nil, true},
		{"two parties", verified(selfSigned(t, "bank", "fedrisk://party/bank", "fedrisk://party/partner")), "", pki.ErrNoPartyIdentity, false},
		{"invalid URI name", verified(selfSigned(t, "bank", "fedrisk://party/Bank_1")), "", pki.ErrNoPartyIdentity, false},
		{"URI with subpath", verified(selfSigned(t, "", "fedrisk://party/bank/x")), "", pki.ErrNoPartyIdentity, false},
		{"invalid CN", verified(selfSigned(t, "Bank Ltd")), "", pki.ErrNoPartyIdentity, false},
	}
	allow, err := pki.NewAllowlist("bank")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pki.PeerParty(tc.cs)
			if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("PeerParty = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
			party, err := allow.Check(tc.cs)
			switch {
			case tc.allowed:
				if err != nil || party != tc.want {
					t.Errorf("Check = %q, %v; want %q allowed", party, err, tc.want)
				}
			case errors.Is(tc.wantErr, pki.ErrNoClientCert):
				if !errors.Is(err, pki.ErrNoClientCert) {
					t.Errorf("Check error %v, want ErrNoClientCert", err)
				}
			default:
				if !errors.Is(err, pki.ErrPeerNotAllowed) || party != tc.want {
					t.Errorf("Check = %q, %v; want %q, ErrPeerNotAllowed", party, err, tc.want)
				}
			}
		})
	}

	t.Run("zero and nil allowlists admit nobody", func(t *testing.T) {
		cs := verified(selfSigned(t, "bank"))
		var nilList *pki.Allowlist
		for _, a := range []*pki.Allowlist{{}, nilList} {
			if _, err := a.Check(cs); !errors.Is(err, pki.ErrPeerNotAllowed) {
				t.Errorf("got %v, want ErrPeerNotAllowed", err)
			}
		}
	})
	if _, err := pki.NewAllowlist("bank", "Partner"); !errors.Is(err, pki.ErrInvalidPartyName) {
		t.Errorf("NewAllowlist with bad name: %v", err)
	}
}

func TestCAInMemory(t *testing.T) {
	if _, err := pki.NewCA(" "); err == nil {
		t.Error("NewCA accepted an empty name")
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueClient("Not_A_Party"); !errors.Is(err, pki.ErrInvalidPartyName) {
		t.Errorf("IssueClient bad name: %v", err)
	}
	if _, err := ca.IssueServer("bad host"); err == nil {
		t.Error("IssueServer accepted a host with a space")
	}
	srv, err := ca.IssueServer("node.example", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(srv.Leaf.DNSNames, []string{"node.example"}) || len(srv.Leaf.IPAddresses) != 1 {
		t.Errorf("SANs %v %v", srv.Leaf.DNSNames, srv.Leaf.IPAddresses)
	}
	def, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := def.Leaf.VerifyHostname(h); err != nil {
			t.Error(err)
		}
	}
	// CertPEM returns a copy.
	p := ca.CertPEM()
	p[0] = 'X'
	if ca.CertPEM()[0] == 'X' {
		t.Error("CertPEM exposes internal state")
	}
}

// A nil pool must not fall back to the system roots, which would admit any
// publicly trusted certificate.
func TestNilPoolsTrustNothing(t *testing.T) {
	if cfg := pki.ServerConfig(tls.Certificate{}, nil, true); cfg.ClientCAs == nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("server: ClientCAs %v, ClientAuth %v", cfg.ClientCAs, cfg.ClientAuth)
	}
	if cfg := pki.ServerConfig(tls.Certificate{}, nil, false); cfg.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("optional client cert: ClientAuth %v", cfg.ClientAuth)
	}
	if cfg := pki.ClientConfig(nil, nil); cfg.RootCAs == nil || len(cfg.Certificates) != 0 || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("client: RootCAs %v, %d certificates, MinVersion %x", cfg.RootCAs, len(cfg.Certificates), cfg.MinVersion)
	}
}

func caCert(t *testing.T, ca *pki.CA) *x509.Certificate {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(f, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := pki.LoadCertificates(f)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// TestBoundAllowlist: a certificate naming a party is taken for it only
// when it chains to that party's trust anchor and carries a pinned key.
func TestBoundAllowlist(t *testing.T) {
	bankCA, err := pki.NewCA("bank CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("institution C")
	if err != nil {
		t.Fatal(err)
	}
	bankRoot, otherRoot := caCert(t, bankCA), caCert(t, otherCA)
	issue := func(ca *pki.CA) *x509.Certificate {
		c, err := ca.IssueClient("bank")
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	genuine, forged := issue(bankCA), issue(otherCA)
	// state is what crypto/tls hands over after verifying leaf to root.
	state := func(leaf, root *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, root}}}
	}
	pin := func(c *x509.Certificate) [32]byte {
		p, err := pki.ParseSPKIPin(strings.ToUpper(pki.SPKIFingerprint(c)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	both := []*x509.Certificate{bankRoot, otherRoot}
	tests := []struct {
		name     string
		defaults []*x509.Certificate
		peer     pki.PeerTrust
		cs       *tls.ConnectionState
		ok       bool
	}{
		{"own anchor: genuine", both, pki.PeerTrust{Roots: []*x509.Certificate{bankRoot}}, state(genuine, bankRoot), true},
		{"own anchor: another CA's certificate", both, pki.PeerTrust{Roots: []*x509.Certificate{bankRoot}}, state(forged, otherRoot), false},
		// The handshake found a chain to another anchor first; the
		// certificate still chains to the bank's own.
		{"own anchor: genuine, other chain first", both, pki.PeerTrust{Roots: []*x509.Certificate{bankRoot}}, state(genuine, otherRoot), true},
		{"single default anchor", []*x509.Certificate{bankRoot}, pki.PeerTrust{}, state(genuine, bankRoot), true},
		{"single default anchor: another CA", []*x509.Certificate{bankRoot}, pki.PeerTrust{}, state(forged, otherRoot), false},
		{"no anchor at all", nil, pki.PeerTrust{}, state(genuine, bankRoot), false},
		{"pinned key", both, pki.PeerTrust{SPKI: [][32]byte{pin(genuine)}}, state(genuine, bankRoot), true},
		{"pin of another key", both, pki.PeerTrust{SPKI: [][32]byte{pin(genuine)}}, state(issue(bankCA), bankRoot), false},
		{"pin and anchor: pinned key from another CA", both, pki.PeerTrust{Roots: []*x509.Certificate{bankRoot}, SPKI: [][32]byte{pin(forged)}}, state(forged, otherRoot), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.peer.Party = "bank"
			allow, err := pki.NewBoundAllowlist(tt.defaults, tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			party, err := allow.Check(tt.cs)
			if ok := err == nil; ok != tt.ok || party != "bank" {
				t.Fatalf("Check = %q, %v; want ok %v", party, err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, pki.ErrUntrustedAnchor) {
				t.Errorf("error %v, want ErrUntrustedAnchor", err)
			}
		})
	}

	if n := pki.Authorities(both); n != 2 {
		t.Errorf("Authorities of two CAs = %d", n)
	}
	if n := pki.Authorities([]*x509.Certificate{bankRoot, bankRoot}); n != 1 {
		t.Errorf("Authorities of one CA twice = %d", n)
	}
	if _, err := pki.ParseSPKIPin("abc"); err == nil {
		t.Error("ParseSPKIPin accepted a short digest")
	}
	allow, err := pki.NewBoundAllowlist(nil, pki.PeerTrust{Party: "bank"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := allow.ClientConfig("partner", nil); !errors.Is(err, pki.ErrPeerNotAllowed) {
		t.Errorf("ClientConfig of an unlisted party: %v", err)
	}
	if _, err := pki.NewBoundAllowlist(nil, pki.PeerTrust{Party: "bank"}, pki.PeerTrust{Party: "bank"}); err == nil {
		t.Error("a party listed twice was accepted")
	}
}

// BenchmarkBoundCheck: the per-request cost of binding a peer to its
// anchor, when the handshake's chain ends there (the usual case) and when
// the certificate must be verified again against the party's anchor.
func BenchmarkBoundCheck(b *testing.B) {
	bankCA, _ := pki.NewCA("bank CA")
	otherCA, _ := pki.NewCA("institution C")
	var bankRoot, otherRoot *x509.Certificate
	for _, c := range []struct {
		ca  *pki.CA
		dst **x509.Certificate
	}{{bankCA, &bankRoot}, {otherCA, &otherRoot}} {
		blk, _ := pem.Decode(c.ca.CertPEM())
		*c.dst, _ = x509.ParseCertificate(blk.Bytes)
	}
	cert, _ := bankCA.IssueClient("bank")
	allow, err := pki.NewBoundAllowlist([]*x509.Certificate{bankRoot, otherRoot}, pki.PeerTrust{Party: "bank", Roots: []*x509.Certificate{bankRoot}})
	if err != nil {
		b.Fatal(err)
	}
	for name, root := range map[string]*x509.Certificate{"chain-at-anchor": bankRoot, "verify-again": otherRoot} {
		cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}, VerifiedChains: [][]*x509.Certificate{{cert.Leaf, root}}}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := allow.Check(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
