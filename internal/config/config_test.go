package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	l, err := Load(Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.Services, ","); got != "consent,psi,serving" {
		t.Errorf("services = %s", got)
	}
	if l.Addrs[ServiceConsent] != "127.0.0.1:7002" || l.Addrs[ServicePSI] != "127.0.0.1:7001" || l.Addrs[ServiceServing] != "127.0.0.1:7003" {
		t.Errorf("addrs = %v", l.Addrs)
	}
	if l.DatabaseURL != "" || l.RedisURL != "" || !l.CacheEnabled || !l.MigrateOnStart {
		t.Errorf("unexpected defaults: %+v", l.Config)
	}
	if l.Sources["cache.enabled"] != "default" {
		t.Errorf("source = %q", l.Sources["cache.enabled"])
	}
}

func TestPrecedence(t *testing.T) {
	file := []byte(`
party: filebank
cache:
  enabled: false
  ttl: 10m
audit_level: minimal
services: [consent, psi]
peers:
  - name: partner
    url: https://127.0.0.1:9001
`)
	env := map[string]string{"CACHE_ENABLED": "true", "AUDIT_LEVEL": "verbose", "CACHE_TTL": "3600"}
	flags := map[string]string{"audit_level": "standard"}
	l, err := Load(Inputs{FileName: "f.yaml", File: file, Env: envOf(env), Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, got, want, source string
	}{
		{"file only", l.Party, "filebank", "file f.yaml"},
		{"env over file", boolStr(l.CacheEnabled), "true", "env CACHE_ENABLED"},
		{"flag over env", l.AuditLevel, "standard", "flag --audit-level"},
		{"env seconds", l.CacheTTL.String(), time.Hour.String(), "env CACHE_TTL"},
		{"file list", strings.Join(l.Services, ","), "consent,psi", "file f.yaml"},
	}
	keys := []string{"party", "cache.enabled", "audit_level", "cache.ttl", "services"}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
			if src := l.Sources[keys[i]]; src != tt.source {
				t.Errorf("source %q, want %q", src, tt.source)
			}
		})
	}
	if len(l.Peers) != 1 || l.Peers[0].Name != "partner" {
		t.Errorf("peers = %+v", l.Peers)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestInvalidValues(t *testing.T) {
	tests := []struct {
		name     string
		in       Inputs
		key      string
		contains string
	}{
		{"env bool", Inputs{Env: envOf(map[string]string{"CACHE_ENABLED": "maybe"})}, "cache.enabled", "accepted values: true, false"},
		{"env enum", Inputs{Env: envOf(map[string]string{"SECURITY_MODE": "paranoid"})}, "security_mode", "accepted values: standard, strict"},
		{"env version", Inputs{Env: envOf(map[string]string{"VERSION": "beta"})}, "version", "stable, canary"},
		{"env ttl", Inputs{Env: envOf(map[string]string{"CACHE_TTL": "-5"})}, "cache.ttl", "seconds"},
		{"flag service", Inputs{Flags: map[string]string{"services": "consent,billing"}}, "services", "unknown service"},
		{"file unknown key", Inputs{FileName: "x.yaml", File: []byte("cache:\n  enabld: true\n")}, "cache.enabld", "unknown key"},
		{"file bad yaml", Inputs{FileName: "x.yaml", File: []byte("a: [\n")}, "(file)", "x.yaml"},
		{"file not mapping", Inputs{FileName: "x.yaml", File: []byte("- a\n- b\n")}, "(file)", "mapping"},
		{"redis scheme", Inputs{Env: envOf(map[string]string{"REDIS_URL": "http://x"})}, "redis_url", "redis://"},
		{"db scheme", Inputs{Env: envOf(map[string]string{"DATABASE_URL": "mysql://u:pw@h/db"})}, "database_url", "postgres://"},
		{"short key", Inputs{Env: envOf(map[string]string{"ENCRYPTION_KEY": "c2hvcnQ="})}, "encryption_key", "need at least 32"},
		{"addr", Inputs{Flags: map[string]string{"listen.psi": "nonsense"}}, "listen.psi", "host:port"},
		{"same addr", Inputs{Flags: map[string]string{"listen.psi": "127.0.0.1:7002"}}, "listen.psi", "not already used"},
		{"peer url", Inputs{Peers: []string{"partner=ftp://x"}}, "peers[0].url", "http"},
		{"peer name", Inputs{Peers: []string{"Partner!=https://x"}}, "peers[0].name", "lowercase"},
		{"peer service url", Inputs{FileName: "x.yaml", File: []byte("peers:\n  - name: p\n    serving_url: ftp://x\n")}, "peers[0].serving_url", "http"},
		{"peer without url", Inputs{FileName: "x.yaml", File: []byte("peers:\n  - name: p\n")}, "peers[0].url", "http"},
		{"short subject ref key", Inputs{Env: envOf(map[string]string{"FEDRISK_SUBJECT_REF_KEY": "abcd"})}, "subject_ref_key", "32"},
		{"mtls without ca", Inputs{Flags: map[string]string{"tls.require_client_cert": "true"}}, "tls.require_client_cert", "tls.ca_file"},
		{"peer pin", Inputs{Peers: []string{"partner=https://x;spki_sha256=abcd"}}, "peers[0].spki_sha256[0]", "64 hex digits"},
		{"peer option", Inputs{Peers: []string{"partner=https://x;ca=f.pem"}}, "peers", "unknown option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.in)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tt.key, err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("%q does not contain %q", err, tt.contains)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	key := "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c="
	env := map[string]string{
		"ENCRYPTION_KEY": key,
		"DATABASE_URL":   "postgres://fed:s3cretpw@db:5432/federated_risk",
		"REDIS_URL":      "redis://:r3dispw@cache:6379/0",
	}
	l, err := Load(Inputs{Env: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{key, "s3cretpw", "r3dispw"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q printed:\n%s", secret, out)
		}
	}
	for _, want := range []string{"encryption_key: \"<redacted>\"", "fed:xxxxx@db", "env DATABASE_URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	// The bad value of a secret is redacted in errors too.
	_, err = Load(Inputs{Env: envOf(map[string]string{"ENCRYPTION_KEY": "tooshort-secret"})})
	if err == nil || strings.Contains(err.Error(), "tooshort-secret") {
		t.Errorf("error leaks secret or is nil: %v", err)
	}
}

func TestPrintRoundTrip(t *testing.T) {
	l, err := Load(Inputs{Env: envOf(map[string]string{"CACHE_TTL": "90", "AUDIT_LEVEL": "verbose"}), Peers: []string{"partner=https://127.0.0.1:9443"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Print(&buf); err != nil {
		t.Fatal(err)
	}
	again, err := Load(Inputs{FileName: "printed", File: buf.Bytes()})
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, buf.String())
	}
	if again.CacheTTL != 90*time.Second || again.AuditLevel != "verbose" || len(again.Peers) != 1 {
		t.Errorf("round trip lost values: %+v", again.Config)
	}
}

func TestDecodeKey(t *testing.T) {
	for _, ok := range []string{strings.Repeat("ab", 32), "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c=", "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c"} {
		if _, err := DecodeKey(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("ab", 16), "!!!"} {
		if _, err := DecodeKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("party: bank\ncache:\n  enabled: false\n"))
	f.Add([]byte("peers:\n  - name: p\n    url: https://x\n"))
	f.Add([]byte("services: [psi]\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Load(Inputs{FileName: "fuzz", File: data})
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
	})
}

func TestPeerServiceURLs(t *testing.T) {
	file := []byte(`
peers:
  - name: partner
    url: https://partner.example
    serving_url: https://partner.example:7003
  - name: telco
    psi_url: https://telco.example:7001
    consent_url: https://telco.example:7002
`)
	l, err := Load(Inputs{FileName: "f.yaml", File: file})
	if err != nil {
		t.Fatal(err)
	}
	p, q := l.Peers[0], l.Peers[1]
	for _, tt := range []struct{ got, want string }{
		{p.URLFor(ServiceServing), "https://partner.example:7003"},
		{p.URLFor(ServicePSI), "https://partner.example"},
		{q.URLFor(ServicePSI), "https://telco.example:7001"},
		{q.URLFor(ServiceConsent), "https://telco.example:7002"},
		{q.URLFor(ServiceServing), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	var b strings.Builder
	if err := l.Print(&b); err != nil {
		t.Fatal(err)
	}
	again, err := Load(Inputs{FileName: "printed.yaml", File: []byte(b.String())})
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, b.String())
	}
	if got := again.Peers[1].URLFor(ServiceConsent); got != "https://telco.example:7002" {
		t.Errorf("round trip: consent url %q\n%s", got, b.String())
	}
}

// TestPeerTrustAnchors: a peer's own CA file and SPKI pins, in the file,
// the environment and flags alike, survive config print.
func TestPeerTrustAnchors(t *testing.T) {
	const pin = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
	file := []byte(`
peers:
  - name: partner
    url: https://partner.example
    ca_file: /etc/fedrisk/partner-ca.crt
    spki_sha256: ` + pin + `
  - name: telco
    url: https://telco.example
    spki_sha256: [` + pin + `, "` + strings.ToUpper(pin) + `"]
`)
	want := []Peer{
		{Name: "partner", URL: "https://partner.example", CAFile: "/etc/fedrisk/partner-ca.crt", SPKI: []string{pin}},
		{Name: "telco", URL: "https://telco.example", SPKI: []string{pin, strings.ToUpper(pin)}},
	}
	item := "partner=https://partner.example;ca_file=/etc/fedrisk/partner-ca.crt;spki_sha256=" + pin
	item2 := "telco=https://telco.example;spki_sha256=" + pin + ";spki_sha256=" + strings.ToUpper(pin)
	for name, in := range map[string]Inputs{
		"file": {FileName: "f.yaml", File: file},
		"env":  {Env: envOf(map[string]string{"FEDRISK_PEERS": item + "," + item2})},
		"flag": {Peers: []string{item, item2}},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := Load(in)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := l.Print(&b); err != nil {
				t.Fatal(err)
			}
			again, err := Load(Inputs{FileName: "printed.yaml", File: []byte(b.String())})
			if err != nil {
				t.Fatalf("printed config does not load: %v\n%s", err, b.String())
			}
			for _, got := range [][]Peer{l.Peers, again.Peers} {
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("peers %+v, want %+v", got, want)
				}
			}
		})
	}
}

// TestScoringValidate: values set in code, not parsed, are checked too.
func TestScoringValidate(t *testing.T) {
	for key, set := range map[string]func(*Scoring){
		"scoring.noise":               func(s *Scoring) { s.Noise = "loud" },
		"scoring.fallback":            func(s *Scoring) { s.Fallback = "maybe" },
		"scoring.budget_on_exhausted": func(s *Scoring) { s.BudgetOnExhausted = "ignore" },
		"scoring.min_score":           func(s *Scoring) { s.MinScore = 900 },
	} {
		c := Default()
		set(&c.Scoring)
		var e *Error
		if err := c.Validate(); !errors.As(err, &e) || e.Key != key {
			t.Errorf("%s: %v", key, err)
		}
	}
	if c := Default(); c.Validate() != nil {
		t.Errorf("defaults invalid: %v", c.Validate())
	}
}

// TestParseServicesAllAndMore (review finding W1): "all" stands for every
// service but the console, and what follows it is still read.
func TestParseServicesAllAndMore(t *testing.T) {
	got, err := ParseServices("all,console")
	if err != nil || len(got) != len(AllServices())+1 || got[len(got)-1] != ServiceConsole {
		t.Fatalf("all,console → %v %v", got, err)
	}
	if got, err := ParseServices("console,all"); err != nil || len(got) != len(AllServices())+1 {
		t.Fatalf("console,all → %v %v", got, err)
	}
}

// TestDeployExamplesLoad: the commented example configurations load.
func TestDeployExamplesLoad(t *testing.T) {
	for _, name := range []string{"guest.yaml", "host.yaml"} {
		data, err := os.ReadFile("../../deploy/examples/" + name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Load(Inputs{FileName: name, File: data})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(l.Peers) == 0 || l.Peers[0].CAFile == "" {
			t.Errorf("%s: the peer has no trust anchor of its own: %+v", name, l.Peers)
		}
	}
}

// TestRedactURL: every password-like part of a URL or DSN is hidden, the
// rest is kept as written (issue 12, finding 9).
func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"userinfo", "postgres://fed:s3cret@db:5432/risk", "postgres://fed:xxxxx@db:5432/risk"},
		{"sslpassword", "postgres://fed@db/risk?sslmode=verify-full&sslpassword=s3cret&sslkey=/k.pem",
			"postgres://fed@db/risk?sslmode=verify-full&sslpassword=xxxxx&sslkey=/k.pem"},
		{"password param", "postgres://db/risk?password=s3cret&application_name=fedrisk", "postgres://db/risk?password=xxxxx&application_name=fedrisk"},
		{"upper case", "postgres://db/risk?PassWord=s3cret", "postgres://db/risk?PassWord=xxxxx"},
		{"escaped key", "postgres://db/risk?pass%77ord=s3cret", "postgres://db/risk?pass%77ord=xxxxx"},
		{"pass", "redis://cache:6379/0?pass=s3cret", "redis://cache:6379/0?pass=xxxxx"},
		{"redis userinfo", "redis://:s3cret@cache:6379/0", "redis://:xxxxx@cache:6379/0"},
		{"token", "https://consent.example/?token=s3cret&x=1", "https://consent.example/?token=xxxxx&x=1"},
		{"access token", "https://consent.example/?access_token=s3cret", "https://consent.example/?access_token=xxxxx"},
		{"secret", "https://consent.example/?client_secret=s3cret", "https://consent.example/?client_secret=xxxxx"},
		{"api key", "https://consent.example/?api_key=s3cret", "https://consent.example/?api_key=xxxxx"},
		{"repeated", "postgres://db/risk?password=a&password=b", "postgres://db/risk?password=xxxxx&password=xxxxx"},
		{"dsn", "host=db user=fed password='s 3cret' sslpassword=s3cret dbname=risk", "host=db user=fed password=xxxxx sslpassword=xxxxx dbname=risk"},
		{"nothing secret", "postgres://db:5432/risk?sslmode=disable", "postgres://db:5432/risk?sslmode=disable"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, "s3cret") || strings.Contains(got, "3cret") {
				t.Errorf("secret left in %q", got)
			}
		})
	}
}

// TestURLSettingsRedacted: config print and errors hide secrets in every
// URL setting, peers included.
func TestURLSettingsRedacted(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":        "postgres://fed@db/risk?sslpassword=s3cret-db",
		"REDIS_URL":           "redis://cache:6379/0?password=s3cret-redis",
		"CONSENT_SERVICE_URL": "https://u:s3cret-consent@consent.example/?token=s3cret-token",
		"FEDRISK_PEERS":       "partner=https://partner.example/?token=s3cret-peer",
	}
	l, err := Load(Inputs{Env: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Print(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("a secret printed:\n%s", buf.String())
	}
	for _, in := range []Inputs{
		{Env: envOf(map[string]string{"CONSENT_SERVICE_URL": "ftp://u:s3cret@x/?token=s3cret"})},
		{Env: envOf(map[string]string{"FEDRISK_PEERS": "partner=ftp://u:s3cret@x/?token=s3cret"})},
		{Peers: []string{"partner=https://x/?token=s3cret;nope=1"}},
	} {
		_, err = Load(in)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks a secret or is nil: %v", err)
		}
	}
}

// TestStrictTurnsOffLoopbackTrust: strict security mode means bearer
// tokens: AUTH_REQUIRED left at its default is turned on, an explicit
// AUTH_REQUIRED=false is refused (issue 12, finding 16).
func TestStrictTurnsOffLoopbackTrust(t *testing.T) {
	l, err := Load(Inputs{Env: envOf(map[string]string{"SECURITY_MODE": "strict"})})
	if err != nil {
		t.Fatal(err)
	}
	if !l.AuthRequired || !strings.Contains(l.Sources["auth_required"], "strict") {
		t.Errorf("strict: auth_required %v (source %q), want true because of strict", l.AuthRequired, l.Sources["auth_required"])
	}
	for name, in := range map[string]Inputs{
		"env":  {Env: envOf(map[string]string{"SECURITY_MODE": "strict", "AUTH_REQUIRED": "false"})},
		"flag": {Env: envOf(map[string]string{"SECURITY_MODE": "strict"}), Flags: map[string]string{"auth_required": "false"}},
		"file": {FileName: "f.yaml", File: []byte("security_mode: strict\nauth_required: false\n")},
	} {
		_, err := Load(in)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "auth_required" || !strings.Contains(err.Error(), "strict") {
			t.Errorf("%s: strict with AUTH_REQUIRED=false: %v", name, err)
		}
	}
	c := Default()
	c.SecurityMode = "strict"
	if err := c.Validate(); err == nil {
		t.Error("Validate accepted strict security mode without auth_required")
	}
	c.AuthRequired = true
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
