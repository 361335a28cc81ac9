package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/deployinit"
)

var deploySecrets = []string{"POSTGRES_PASSWORD", "REDIS_PASSWORD", "ENCRYPTION_KEY", "FEDRISK_SUBJECT_REF_KEY", "GRAFANA_ADMIN_PASSWORD"}

func readEnvFile(t *testing.T, dir string) (map[string]string, []byte) {
	t.Helper()
	path := filepath.Join(dir, ".env")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %o, want 600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return deployinit.EnvFile(data), data
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeployInit(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := runCLI(t, nil, "deploy", "init", "--dir", dir, "--env", "production", "--party", "partner", "--role", "host", "--ecdsa", "--hosts", "api.partner.example")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"created  .env", "created  certs/partner/server.key", "created  data/fedrisk/"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	env, first := readEnvFile(t, dir)
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`)
	seen := map[string]bool{}
	for _, k := range deploySecrets {
		v := env[k]
		if !urlSafe.MatchString(v) || seen[v] {
			t.Errorf("%s = %q: want a distinct URL-safe random secret", k, v)
		}
		seen[v] = true
	}
	for k, want := range map[string]string{"POSTGRES_DB": "federated_risk", "FEDRISK_PARTY": "partner", "FEDRISK_ROLE": "host", "ENVIRONMENT": "production", "PROMETHEUS_RETENTION": "30d"} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["JWT_SECRET"]; ok || !strings.Contains(string(first), "JWT_SECRET") || !strings.Contains(string(first), "keys rotate jwt") {
		t.Error(".env must say where the runbook's JWT_SECRET went, and not set it")
	}
	// The node accepts what .env gives it, and the passwords go into URLs as they are.
	if _, err := config.Load(config.Inputs{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}); err != nil {
		t.Errorf("the configuration refuses the generated .env: %v", err)
	}
	for _, k := range []string{"ENCRYPTION_KEY", "FEDRISK_SUBJECT_REF_KEY"} {
		if key, err := config.DecodeKey(env[k]); err != nil || len(key) != 32 {
			t.Errorf("%s: %v (%d bytes)", k, err, len(key))
		}
	}
	if u, err := url.Parse("postgres://u:" + env["POSTGRES_PASSWORD"] + "@postgres:5432/db"); err != nil {
		t.Errorf("password not URL-safe: %v", err)
	} else if pw, _ := u.User.Password(); pw != env["POSTGRES_PASSWORD"] {
		t.Error("password changed by URL parsing")
	}
	srv := readCert(t, filepath.Join(dir, "certs/partner/server.crt"))
	for _, h := range []string{"consent-service", "psi-service", "model-serving", "nginx", "localhost", "api.partner.example"} {
		if !slices.Contains(srv.DNSNames, h) {
			t.Errorf("server certificate lacks %s: %v", h, srv.DNSNames)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "certs/partner/server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v %v", fi, err)
	}

	// A second run changes nothing.
	keyBefore, _ := os.ReadFile(filepath.Join(dir, "certs/partner/server.key"))
	code, out, stderr = runCLI(t, nil, "deploy", "init", "--dir", dir, "--env", "production", "--party", "partner", "--ecdsa")
	if code != 0 || strings.Contains(out, "created") || !strings.Contains(out, "kept     .env") {
		t.Errorf("second run: exit %d %s\n%s", code, stderr, out)
	}
	_, second := readEnvFile(t, dir)
	keyAfter, _ := os.ReadFile(filepath.Join(dir, "certs/partner/server.key"))
	if string(first) != string(second) || string(keyBefore) != string(keyAfter) {
		t.Error("a second run rewrote .env or a key")
	}
}

func TestDeployInitKeepsExistingSecrets(t *testing.T) {
	dir := t.TempDir()
	mine := "POSTGRES_PASSWORD=operator-chosen\nREDIS_PASSWORD=also-mine"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, nil, "deploy", "init", "--dir", dir, "--ecdsa")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	env, data := readEnvFile(t, dir)
	if !strings.HasPrefix(string(data), mine+"\n") || env["POSTGRES_PASSWORD"] != "operator-chosen" || env["REDIS_PASSWORD"] != "also-mine" {
		t.Errorf("existing lines changed:\n%s", data)
	}
	if strings.Count(string(data), "POSTGRES_PASSWORD=") != 1 || !strings.Contains(out, "added    .env ENCRYPTION_KEY") || env["ENCRYPTION_KEY"] == "" {
		t.Errorf("missing keys not appended once:\n%s\n%s", out, data)
	}
	if env["ENVIRONMENT"] != "dev" || env["FEDRISK_LOG_FORMAT"] != "text" {
		t.Errorf("dev defaults: %v", env)
	}
}

func TestDeployInitRefusesPartialCertificates(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "certs/ca.crt"), []byte("operator's CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "deploy", "init", "--dir", dir, "--ecdsa")
	if code != exitFailure || !strings.Contains(stderr, "certs/ca.crt exist") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "certs/ca.crt")); string(b) != "operator's CA" {
		t.Error("the existing CA certificate was overwritten")
	}
	for _, args := range [][]string{{"--env", "staging"}, {"--party", "Bank!"}, {"--days", "0"}} {
		if code, _, _ := runCLI(t, nil, append([]string{"deploy", "init", "--dir", t.TempDir()}, args...)...); code != exitBadUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitBadUsage)
		}
	}
}

// TestDeployInitRunbookCertificates: without --ecdsa the keys are the
// runbook's RSA 4096 and the certificates last 365 days.
func TestDeployInitRunbookCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA 4096 key generation")
	}
	dir := t.TempDir()
	if code, _, stderr := runCLI(t, nil, "deploy", "init", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range []string{"ca.crt", "bank/server.crt", "bank/client.crt"} {
		c := readCert(t, filepath.Join(dir, "certs", f))
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() != 4096 {
			t.Errorf("%s: key %T, want RSA 4096", f, c.PublicKey)
		}
		if days := time.Until(c.NotAfter).Hours() / 24; days < 364 || days > 366 {
			t.Errorf("%s: valid %.1f more days, want 365", f, days)
		}
	}
}

// TestDeployInitRefusesPlaceholders (review finding D2): a .env copied from
// .env.example keeps its "<32 random bytes, ...>" placeholders; deploy init
// must not take them for secrets.
func TestDeployInitRefusesPlaceholders(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("GRAFANA_ADMIN_PASSWORD=<16 random bytes, base64url>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "deploy", "init", "--dir", dir, "--ecdsa")
	if code == 0 || !strings.Contains(stderr, "GRAFANA_ADMIN_PASSWORD is still the placeholder") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ".env")); string(b) != "GRAFANA_ADMIN_PASSWORD=<16 random bytes, base64url>\n" {
		t.Errorf("a refused run changed .env:\n%s", b)
	}
}
