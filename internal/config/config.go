// Package config holds the effective configuration of one fedrisk node and
// the rules that build it: defaults, then a YAML file, then the operations
// runbook's environment variables (DATABASE_URL, REDIS_URL, ENCRYPTION_KEY,
// CONSENT_SERVICE_URL, VERSION, CACHE_ENABLED, CACHE_TTL, SECURITY_MODE,
// AUTH_REQUIRED, AUDIT_LEVEL and a few FEDRISK_* extras), then command-line
// flags. Every source goes through the same table of settings, so one value is
// validated the same way wherever it comes from, and an invalid value is a
// single *Error naming the key, the source and the accepted values.
//
// The package never reads the process environment or files on its own: the
// caller passes a lookup function and the file bytes, so main stays the only
// place that touches the outside world.
package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Service names, as accepted by --services and used as metric labels.
const (
	ServiceConsent = "consent"
	ServicePSI     = "psi"
	ServiceServing = "serving"
	// ServiceConsole is the web console: it owns nothing and calls the
	// other services' APIs. It runs only when --services names it.
	ServiceConsole = "console"
)

// AllServices lists every API service a node can run, in start order: the
// services peers call and "all" means. The console is apart (see
// KnownServices).
func AllServices() []string { return []string{ServiceConsent, ServicePSI, ServiceServing} }

// KnownServices lists every service --services accepts: the API services,
// then the console.
func KnownServices() []string { return append(AllServices(), ServiceConsole) }

// Config is the effective configuration of one node.
type Config struct {
	Party   string // this party's name, e.g. "bank"
	Role    string // guest or host
	DataDir string // where the embedded database and generated files live

	Services []string          // services to run
	Addrs    map[string]string // listen address per service
	// OpsAddr is the operations listener (/health, /ready, /metrics in
	// plain HTTP); empty: none.
	OpsAddr string

	DatabaseURL       string // empty: SQLite file under DataDir
	MigrateOnStart    bool
	RedisURL          string // empty: in-memory cache
	CacheEnabled      bool
	CacheTTL          time.Duration // >0 replaces every class TTL
	EncryptionKey     string        // secret
	SubjectRefKey     string        // secret shared by the federation: per-host subject references
	ConsentServiceURL string
	Version           string // stable or canary
	SecurityMode      string // standard or strict
	AuthRequired      bool
	AuditLevel        string // minimal, standard or verbose

	LogLevel  string
	LogFormat string

	HTTP HTTP
	TLS  TLS

	// PSIInputDir is where PSI jobs read CSV inputs (psi.input_dir);
	// empty: DataDir/input (see PSIInputs).
	PSIInputDir string

	Peers []Peer

	Scoring Scoring // the scoring service (scoring.* settings)

	Console Console // the web console (console.* settings)
}

// HTTP holds the limits shared by every listener.
type HTTP struct {
	MaxBodyBytes      int64
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownGrace     time.Duration
	PeerTimeout       time.Duration // deadline of each readiness probe of a peer
}

// TLS configures the listeners and the client used towards peers.
type TLS struct {
	CertFile          string
	KeyFile           string
	CAFile            string // CA certificates that sign peers (comma-separated files allowed)
	ClientCertFile    string // this party's client certificate towards peers
	ClientKeyFile     string
	RequireClientCert bool
}

// Enabled reports whether listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Peer is another party's node this one talks to.
type Peer struct {
	Name string // party name, as in its client certificate
	URL  string // base URL, e.g. https://partner.example (an ingress routing /psi, /consent, /score, /train)
	// ServiceURLs override URL for one service (keys: ServicePSI,
	// ServiceConsent, ServiceServing) when the peer's services listen on
	// their own ports, e.g. serving → https://partner.example:7003.
	ServiceURLs map[string]string
	// CAFile holds the peer's own trust anchor (its institution's CA
	// certificates, PEM): a certificate naming the peer is accepted only
	// if it chains to them, and the peer's servers are verified against
	// them alone. Empty: tls.ca_file.
	CAFile string
	// SPKI pins the hex SHA-256 digests of the SubjectPublicKeyInfo of
	// the certificates (client and server) the peer may present; empty:
	// any key its trust anchor certifies.
	SPKI []string
}

// URLFor returns the base URL of the peer's service s: its own URL when
// configured, else the peer's URL.
func (p Peer) URLFor(s string) string {
	if u := p.ServiceURLs[s]; u != "" {
		return u
	}
	return p.URL
}

// Default returns the configuration a node runs with when nothing is set:
// all services, SQLite under ./fedrisk-data, an in-memory cache.
func Default() Config {
	return Config{
		Party:    "bank",
		Role:     "guest",
		DataDir:  "fedrisk-data",
		Services: AllServices(),
		Addrs: map[string]string{
			ServicePSI:     "127.0.0.1:7001",
			ServiceConsent: "127.0.0.1:7002",
			ServiceServing: "127.0.0.1:7003",
			ServiceConsole: "127.0.0.1:8080",
		},
		MigrateOnStart: true,
		CacheEnabled:   true,
		Version:        "stable",
		SecurityMode:   "standard",
		AuditLevel:     "standard",
		LogLevel:       "info",
		LogFormat:      "json",
		HTTP: HTTP{
			MaxBodyBytes:      1 << 20,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownGrace:     20 * time.Second,
			PeerTimeout:       2 * time.Second,
		},
		Scoring: DefaultScoring(),
	}
}

// Error is an invalid configuration value.
type Error struct {
	Key      string // setting key, e.g. "cache.enabled"
	Source   string // "file config.yaml", "env CACHE_ENABLED", "flag --redis-url", "default"
	Value    string // the rejected value (redacted for secrets)
	Accepted string // what would have been accepted
	Err      error  // optional cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration: %s", e.Key)
	if e.Source != "" {
		fmt.Fprintf(&b, " (from %s)", e.Source)
	}
	fmt.Fprintf(&b, ": %q", e.Value)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Accepted != "" {
		fmt.Fprintf(&b, "; accepted values: %s", e.Accepted)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Validate checks cross-field rules that no single setting can check.
func (c *Config) Validate() error {
	if len(c.Services) == 0 {
		return &Error{Key: "services", Value: "", Accepted: "a non-empty list of " + strings.Join(KnownServices(), ", ")}
	}
	for _, s := range c.Services {
		if c.Addrs[s] == "" {
			return &Error{Key: "listen." + s, Value: "", Accepted: "host:port"}
		}
	}
	seen := map[string]string{}
	for _, s := range c.Services {
		a := c.Addrs[s]
		if other, ok := seen[a]; ok && !strings.HasSuffix(a, ":0") {
			return &Error{Key: "listen." + s, Value: a, Accepted: "an address not already used by listen." + other}
		}
		seen[a] = s
	}
	if other, ok := seen[c.OpsAddr]; ok && c.OpsAddr != "" && !strings.HasSuffix(c.OpsAddr, ":0") {
		return &Error{Key: "listen.ops", Value: c.OpsAddr, Accepted: "an address not already used by listen." + other}
	}
	if c.SecurityMode == "strict" && !c.AuthRequired {
		return &Error{Key: "auth_required", Value: "false", Accepted: "true with security_mode=strict (strict turns loopback trust off)"}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return &Error{Key: "tls.key_file", Value: c.TLS.KeyFile, Accepted: "set together with tls.cert_file"}
	}
	if (c.TLS.ClientCertFile == "") != (c.TLS.ClientKeyFile == "") {
		return &Error{Key: "tls.client_key_file", Value: c.TLS.ClientKeyFile, Accepted: "set together with tls.client_cert_file"}
	}
	peerCA := slices.ContainsFunc(c.Peers, func(p Peer) bool { return p.CAFile != "" })
	if c.TLS.RequireClientCert && ((c.TLS.CAFile == "" && !peerCA) || !c.TLS.Enabled()) {
		return &Error{Key: "tls.require_client_cert", Value: "true", Accepted: "true only with tls.cert_file, tls.key_file and tls.ca_file (or peers[].ca_file)"}
	}
	names := map[string]bool{}
	for i, p := range c.Peers {
		key := fmt.Sprintf("peers[%d]", i)
		if err := checkName(p.Name); err != nil {
			return &Error{Key: key + ".name", Value: p.Name, Accepted: "lowercase letters, digits and '-', 1..63 characters"}
		}
		if names[p.Name] {
			return &Error{Key: key + ".name", Value: p.Name, Accepted: "a name not used by another peer"}
		}
		names[p.Name] = true
		if p.URL != "" || len(p.ServiceURLs) == 0 {
			if err := checkURL(p.URL); err != nil {
				return &Error{Key: key + ".url", Value: RedactURL(p.URL), Accepted: "an http:// or https:// URL", Err: err}
			}
		}
		for j, pin := range p.SPKI {
			if !isSPKIPin(pin) {
				return &Error{Key: fmt.Sprintf("%s.spki_sha256[%d]", key, j), Value: pin, Accepted: "the 64 hex digits of a SHA-256 digest (colons allowed)"}
			}
		}
		for _, svc := range slices.Sorted(maps.Keys(p.ServiceURLs)) {
			if !slices.Contains(AllServices(), svc) {
				return &Error{Key: key + "." + svc + "_url", Value: svc, Accepted: "psi_url, consent_url or serving_url"}
			}
			if err := checkURL(p.ServiceURLs[svc]); err != nil {
				return &Error{Key: key + "." + svc + "_url", Value: RedactURL(p.ServiceURLs[svc]), Accepted: "an http:// or https:// URL", Err: err}
			}
		}
	}
	if (c.Console.TLSCertFile == "") != (c.Console.TLSKeyFile == "") {
		return &Error{Key: "console.tls_key_file", Value: c.Console.TLSKeyFile, Accepted: "set together with console.tls_cert_file"}
	}
	return c.Scoring.validate()
}

// isSPKIPin reports whether s is 64 hex digits, optionally colon-separated.
func isSPKIPin(s string) bool {
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// PSIInputs returns the directory PSI jobs read CSV inputs from.
func (c *Config) PSIInputs() string {
	if c.PSIInputDir != "" {
		return c.PSIInputDir
	}
	return filepath.Join(c.DataDir, "input")
}

// HasService reports whether the node runs service s.
func (c *Config) HasService(s string) bool { return slices.Contains(c.Services, s) }

func checkName(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("length %d", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("character %q", r)
		}
	}
	return nil
}
