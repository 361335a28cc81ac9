package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Setting is one configuration key with the names it has in each source.
type Setting struct {
	Key      string // key in the YAML file, dotted for nested maps
	Env      string // environment variable, "" if none
	Flag     string // command-line flag of `fedrisk serve`, "" if none
	Bool     bool   // a boolean flag may be given without a value
	Secret   bool   // never printed in full
	Usage    string // one line for --help and the README table
	Accepted string // accepted values, for error messages

	set func(c *Config, v string) error
	get func(c *Config) string
}

// Settings returns every configuration key, in the order `config print`
// shows them. Peers are a list and are handled apart (see ParsePeers).
func Settings() []Setting {
	return append([]Setting{
		str("party", "FEDRISK_PARTY", "party", "this party's name (as in its certificates)", "lowercase letters, digits and '-', 1..63 characters",
			func(c *Config) *string { return &c.Party }, checkName),
		oneOf("role", "FEDRISK_ROLE", "role", "guest (label holder) or host (feature provider)", func(c *Config) *string { return &c.Role }, "guest", "host"),
		str("data_dir", "FEDRISK_DATA_DIR", "data-dir", "directory of the embedded database and generated files", "a directory path",
			func(c *Config) *string { return &c.DataDir }, nonEmpty),
		{Key: "services", Env: "FEDRISK_SERVICES", Flag: "services", Usage: "services to run, comma-separated",
			Accepted: "a comma-separated list of " + strings.Join(KnownServices(), ", ") + " (all: every service but the console)",
			set: func(c *Config, v string) error {
				list, err := ParseServices(v)
				if err == nil {
					c.Services = list
				}
				return err
			},
			get: func(c *Config) string { return strings.Join(c.Services, ",") }},
		addr(ServiceConsent, "FEDRISK_CONSENT_ADDR", "consent-addr"),
		addr(ServicePSI, "FEDRISK_PSI_ADDR", "psi-addr"),
		addr(ServiceServing, "FEDRISK_SERVING_ADDR", "serving-addr"),
		addr(ServiceConsole, "FEDRISK_CONSOLE_ADDR", "console-addr"),
		{Key: "listen.ops", Env: "FEDRISK_OPS_ADDR", Flag: "ops-addr",
			Usage:    "operations listener (plain HTTP, never asks for a client certificate): /health, /ready and /metrics of the whole process for kubelet probes, container healthchecks and Prometheus; empty: off",
			Accepted: "empty or host:port, e.g. :7000",
			set: func(c *Config, v string) error {
				v = strings.TrimSpace(v)
				if v != "" {
					if err := checkHostPort(v); err != nil {
						return err
					}
				}
				c.OpsAddr = v
				return nil
			},
			get: func(c *Config) string { return c.OpsAddr }},
		{Key: "database_url", Env: "DATABASE_URL", Flag: "database-url", Secret: true,
			Usage:    "PostgreSQL URL (postgres://...); empty: SQLite under data_dir",
			Accepted: "empty, postgres://..., postgresql://... or sqlite:PATH",
			set: func(c *Config, v string) error {
				if err := checkDatabaseURL(v); err != nil {
					return err
				}
				c.DatabaseURL = v
				return nil
			},
			get: func(c *Config) string { return RedactURL(c.DatabaseURL) }},
		boolean("migrate_on_start", "FEDRISK_MIGRATE_ON_START", "migrate-on-start", "apply database migrations at start", func(c *Config) *bool { return &c.MigrateOnStart }),
		{Key: "redis_url", Env: "REDIS_URL", Flag: "redis-url", Secret: true,
			Usage: "Redis URL (redis://...); empty: in-memory cache", Accepted: "empty, redis://... or rediss://...",
			set: func(c *Config, v string) error {
				if v != "" {
					u, err := url.Parse(v)
					if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
						return errors.New("not a redis:// URL")
					}
				}
				c.RedisURL = v
				return nil
			},
			get: func(c *Config) string { return RedactURL(c.RedisURL) }},
		boolean("cache.enabled", "CACHE_ENABLED", "cache-enabled", "use the cache (false: every read goes to the source)", func(c *Config) *bool { return &c.CacheEnabled }),
		{Key: "cache.ttl", Env: "CACHE_TTL", Flag: "cache-ttl", Usage: "TTL replacing every cache class's default; 0 keeps the runbook TTLs",
			Accepted: "seconds (e.g. 3600) or a duration (e.g. 1h); 0 for the per-class defaults",
			set: func(c *Config, v string) error {
				d, err := parseDuration(v)
				if err == nil {
					c.CacheTTL = d
				}
				return err
			},
			get: func(c *Config) string { return c.CacheTTL.String() }},
		{Key: "encryption_key", Env: "ENCRYPTION_KEY", Secret: true,
			Usage:    "key-encryption key for personal data at rest (not a flag: command lines are visible to other users)",
			Accepted: "32 or more bytes, base64 (openssl rand -base64 32) or hex encoded",
			set: func(c *Config, v string) error {
				if v != "" {
					if _, err := DecodeKey(v); err != nil {
						return err
					}
				}
				c.EncryptionKey = v
				return nil
			},
			get: func(c *Config) string {
				if c.EncryptionKey == "" {
					return ""
				}
				return "<redacted>"
			}},
		{Key: "subject_ref_key", Env: "FEDRISK_SUBJECT_REF_KEY", Secret: true,
			Usage:    "the federation's shared key for per-host subject references (consent token claim href, host feature keys); not a flag",
			Accepted: "32 or more bytes, base64 or hex encoded (openssl rand -hex 32)",
			set: func(c *Config, v string) error {
				if v != "" {
					if _, err := DecodeKey(v); err != nil {
						return err
					}
				}
				c.SubjectRefKey = v
				return nil
			},
			get: func(c *Config) string {
				if c.SubjectRefKey == "" {
					return ""
				}
				return "<redacted>"
			}},
		{Key: "consent_service_url", Env: "CONSENT_SERVICE_URL", Flag: "consent-service-url", Usage: "consent service used by psi and serving; empty: the one in this process",
			Accepted: "empty or an http:// or https:// URL",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkURL(v); err != nil {
						return err
					}
				}
				c.ConsentServiceURL = v
				return nil
			},
			get: func(c *Config) string { return RedactURL(c.ConsentServiceURL) }},
		oneOf("version", "VERSION", "release", "release track of this deployment", func(c *Config) *string { return &c.Version }, "stable", "canary"),
		oneOf("security_mode", "SECURITY_MODE", "security-mode", "strict tightens verification (emergency switch): AUTH_REQUIRED on (no loopback trust; AUTH_REQUIRED=false is an error), no plain-HTTP loopback peers, and no start with a data_dir open to others or a peer that several CAs could impersonate", func(c *Config) *string { return &c.SecurityMode }, "standard", "strict"),
		boolean("auth_required", "AUTH_REQUIRED", "auth-required", "require bearer tokens with roles on client APIs (false: every loopback caller is an admin, for the demo and development; on with security_mode=strict)", func(c *Config) *bool { return &c.AuthRequired }),
		oneOf("audit_level", "AUDIT_LEVEL", "audit-level", "how much the audit log records", func(c *Config) *string { return &c.AuditLevel }, "minimal", "standard", "verbose"),
		oneOf("log.level", "FEDRISK_LOG_LEVEL", "log-level", "log level", func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error"),
		oneOf("log.format", "FEDRISK_LOG_FORMAT", "log-format", "log format", func(c *Config) *string { return &c.LogFormat }, "json", "text"),
		{Key: "http.max_body_bytes", Env: "FEDRISK_HTTP_MAX_BODY_BYTES", Usage: "largest request body accepted", Accepted: "an integer from 1024 to 1073741824",
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1024 || n > 1<<30 {
					return errors.New("out of range")
				}
				c.HTTP.MaxBodyBytes = n
				return nil
			},
			get: func(c *Config) string { return strconv.FormatInt(c.HTTP.MaxBodyBytes, 10) }},
		duration("http.read_header_timeout", "FEDRISK_HTTP_READ_HEADER_TIMEOUT", "", func(c *Config) *time.Duration { return &c.HTTP.ReadHeaderTimeout }),
		duration("http.read_timeout", "FEDRISK_HTTP_READ_TIMEOUT", "", func(c *Config) *time.Duration { return &c.HTTP.ReadTimeout }),
		duration("http.write_timeout", "FEDRISK_HTTP_WRITE_TIMEOUT", "", func(c *Config) *time.Duration { return &c.HTTP.WriteTimeout }),
		duration("http.idle_timeout", "FEDRISK_HTTP_IDLE_TIMEOUT", "", func(c *Config) *time.Duration { return &c.HTTP.IdleTimeout }),
		duration("http.shutdown_grace", "FEDRISK_SHUTDOWN_GRACE", "shutdown-grace", func(c *Config) *time.Duration { return &c.HTTP.ShutdownGrace }),
		duration("http.peer_timeout", "FEDRISK_PEER_TIMEOUT", "", func(c *Config) *time.Duration { return &c.HTTP.PeerTimeout }),
		file("tls.cert_file", "FEDRISK_TLS_CERT", "tls-cert", "server certificate (PEM); empty: plain HTTP", func(c *Config) *string { return &c.TLS.CertFile }),
		file("tls.key_file", "FEDRISK_TLS_KEY", "tls-key", "server private key (PEM)", func(c *Config) *string { return &c.TLS.KeyFile }),
		file("tls.ca_file", "FEDRISK_TLS_CA", "tls-ca", "CA certificates of peers, comma-separated files", func(c *Config) *string { return &c.TLS.CAFile }),
		file("tls.client_cert_file", "FEDRISK_TLS_CLIENT_CERT", "tls-client-cert", "this party's client certificate towards peers", func(c *Config) *string { return &c.TLS.ClientCertFile }),
		file("tls.client_key_file", "FEDRISK_TLS_CLIENT_KEY", "tls-client-key", "key of the client certificate", func(c *Config) *string { return &c.TLS.ClientKeyFile }),
		boolean("tls.require_client_cert", "FEDRISK_TLS_REQUIRE_CLIENT_CERT", "tls-require-client-cert", "mutual TLS: refuse connections without a client certificate signed by tls.ca_file", func(c *Config) *bool { return &c.TLS.RequireClientCert }),
		str("psi.input_dir", "FEDRISK_PSI_INPUT_DIR", "psi-input-dir", "directory PSI jobs read CSV inputs from: only regular files below it (symlinks only within it); empty: data_dir/input", "a directory path",
			func(c *Config) *string { return &c.PSIInputDir }, func(string) error { return nil }),
	}, append(scoringSettings(), consoleSettings()...)...)
}

// Get returns the printable (redacted) value of key in c.
func (c *Config) Get(key string) (string, bool) {
	for _, s := range Settings() {
		if s.Key == key {
			return s.get(c), true
		}
	}
	return "", false
}

func (s Setting) apply(c *Config, v, source string) error {
	if err := s.set(c, v); err != nil {
		shown := RedactURL(v) // a URL of any setting may carry a password
		if s.Secret {
			shown = redactValue(s, v)
		}
		return &Error{Key: s.Key, Source: source, Value: shown, Accepted: s.Accepted, Err: cleanCause(err)}
	}
	return nil
}

// cleanCause drops causes that only repeat "invalid value".
func cleanCause(err error) error {
	if errors.Is(err, errInvalid) {
		return nil
	}
	return err
}

var errInvalid = errors.New("invalid")

func redactValue(s Setting, v string) string {
	if s.Key == "encryption_key" || s.Key == "subject_ref_key" {
		return "<redacted>"
	}
	return RedactURL(v)
}

func str(key, env, flag, usage, accepted string, field func(*Config) *string, check func(string) error) Setting {
	return Setting{Key: key, Env: env, Flag: flag, Usage: usage, Accepted: accepted,
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if err := check(v); err != nil {
				return errInvalid
			}
			*field(c) = v
			return nil
		},
		get: func(c *Config) string { return *field(c) }}
}

func oneOf(key, env, flag, usage string, field func(*Config) *string, values ...string) Setting {
	return Setting{Key: key, Env: env, Flag: flag, Usage: usage, Accepted: strings.Join(values, ", "),
		set: func(c *Config, v string) error {
			v = strings.ToLower(strings.TrimSpace(v))
			if !slices.Contains(values, v) {
				return errInvalid
			}
			*field(c) = v
			return nil
		},
		get: func(c *Config) string { return *field(c) }}
}

func boolean(key, env, flag, usage string, field func(*Config) *bool) Setting {
	return Setting{Key: key, Env: env, Flag: flag, Bool: true, Usage: usage, Accepted: "true, false (also 1/0, yes/no, on/off)",
		set: func(c *Config, v string) error {
			b, err := ParseBool(v)
			if err == nil {
				*field(c) = b
			}
			return err
		},
		get: func(c *Config) string { return strconv.FormatBool(*field(c)) }}
}

func duration(key, env, flag string, field func(*Config) *time.Duration) Setting {
	return Setting{Key: key, Env: env, Flag: flag, Usage: strings.ReplaceAll(strings.TrimPrefix(key, "http."), "_", " "),
		Accepted: "a positive duration such as 30s or 2m, or whole seconds",
		set: func(c *Config, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return err
			}
			if d <= 0 {
				return errors.New("must be positive")
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) string { return field(c).String() }}
}

func file(key, env, flag, usage string, field func(*Config) *string) Setting {
	return str(key, env, flag, usage, "a file path", field, func(string) error { return nil })
}

func addr(service, env, flag string) Setting {
	return Setting{Key: "listen." + service, Env: env, Flag: flag, Usage: service + " service listen address",
		Accepted: "host:port, e.g. 127.0.0.1:7002 or :7002",
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if err := checkHostPort(v); err != nil {
				return err
			}
			if c.Addrs == nil {
				c.Addrs = map[string]string{}
			}
			c.Addrs[service] = v
			return nil
		},
		get: func(c *Config) string { return c.Addrs[service] }}
}

func checkHostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errInvalid
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errInvalid
	}
	return nil
}

func nonEmpty(v string) error {
	if v == "" {
		return errInvalid
	}
	return nil
}

// ParseBool accepts the spellings operators use in environment files.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errInvalid
}

// parseDuration accepts whole seconds (as the runbook's CACHE_TTL=3600) or a
// Go duration.
func parseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 1<<31 {
			return 0, errInvalid
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errInvalid
	}
	return d, nil
}

// ParseServices parses a comma-separated service list; "all" means every
// service.
func ParseServices(v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "":
			continue
		case s == "all":
			for _, a := range AllServices() {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		case !slices.Contains(KnownServices(), s):
			return nil, fmt.Errorf("unknown service %q", s)
		case !slices.Contains(out, s):
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errInvalid
	}
	return out, nil
}

// ParsePeers parses "name=url,name=url" (env FEDRISK_PEERS, flag --peer).
// Each item may carry the peer's trust anchor after semicolons:
// "name=url;ca_file=PATH;spki_sha256=HEX;spki_sha256=HEX".
func ParsePeers(v string) ([]Peer, error) {
	var out []Peer
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		fields := strings.Split(item, ";")
		name, u, ok := strings.Cut(fields[0], "=")
		if !ok {
			return nil, fmt.Errorf("%q is not name=url", fields[0])
		}
		p := Peer{Name: strings.TrimSpace(name), URL: strings.TrimSpace(u)}
		for _, f := range fields[1:] {
			k, val, _ := strings.Cut(strings.TrimSpace(f), "=")
			switch val = strings.TrimSpace(val); k {
			case "ca_file":
				p.CAFile = val
			case "spki_sha256":
				p.SPKI = append(p.SPKI, val)
			default:
				return nil, fmt.Errorf("peer %.70q: unknown option %.40q (ca_file, spki_sha256)", p.Name, k)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func checkURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return errInvalid
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errInvalid
	}
	return nil
}

func checkDatabaseURL(v string) error {
	switch {
	case v == "":
		return nil
	case strings.HasPrefix(v, "sqlite:"):
		if strings.TrimPrefix(v, "sqlite:") == "" {
			return errors.New("empty path")
		}
		return nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if _, err := url.Parse(v); err != nil {
			return errInvalid
		}
		return nil
	}
	return errInvalid
}

// DecodeKey decodes a key given as base64 (standard or URL alphabet) or hex
// and checks that it has at least 32 bytes.
func DecodeKey(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	var key []byte
	if b, err := hex.DecodeString(v); err == nil && len(v) >= 64 {
		key = b
	} else if b, err := base64.StdEncoding.DecodeString(v); err == nil {
		key = b
	} else if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err == nil {
		key = b
	} else {
		return nil, errors.New("neither base64 nor hex")
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("%d bytes, need at least 32", len(key))
	}
	return key, nil
}

// secretKey matches the names of URL query parameters and DSN keys that
// carry secrets: password, sslpassword, pass, passwd, pwd, token,
// access_token, client_secret, api_key, credentials...
var secretKey = regexp.MustCompile(`(?i)pass|pwd|secret|token|credential|auth|api[_-]?key|access[_-]?key|private[_-]?key`)

// dsnSecret is a secret key=value pair of a key/value connection string.
var dsnSecret = regexp.MustCompile(`(?i)\b([a-z_]*(?:pass|pwd|secret|token|credential)[a-z_]*\s*=\s*)('[^']*'|\S+)`)

// RedactURL hides every secret of a database, Redis or service URL: the
// userinfo password and the value of every password-like query parameter
// (sslpassword, password, pass, token, client_secret, api_key, ...), and the
// same keys of a key=value connection string. The rest stays as written.
// A URL that does not parse is hidden whole.
func RedactURL(v string) string {
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	switch {
	case err == nil && u.Scheme != "" && u.Host != "":
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		u.RawQuery = redactQuery(u.RawQuery)
		u.Fragment, u.RawFragment = redactQuery(u.Fragment), ""
		return u.String()
	case err != nil && strings.Contains(v, "://"):
		return "<redacted: not a valid URL>"
	}
	return dsnSecret.ReplaceAllString(v, "${1}xxxxx")
}

// redactQuery replaces the values of secret parameters of a raw query,
// keeping the order and spelling of the others.
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if secretKey.MatchString(name) {
			parts[i] = k + "=xxxxx"
		}
	}
	return strings.Join(parts, "&")
}
