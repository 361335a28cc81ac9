// Package healthprobe builds the probes of package health, with their
// targets from a node's configuration or explicit URLs.
//
// It probes fedrisk's /health and /ready (over mutual TLS with the node's
// client certificate, with a bearer token when one is given), Prometheus's
// and Alertmanager's /-/healthy, Grafana's /api/health, PostgreSQL (a
// connection and a query) and Redis (PING). Targets come from a node's
// configuration (FromConfig: its listeners, ops listener, peers,
// DATABASE_URL, REDIS_URL) and from explicit URLs.
package healthprobe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/health"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// Component names: the runbook's service names.
const (
	ConsentService = "consent-service"
	PSIService     = "psi-service"
	ModelServing   = "model-serving"
	Console        = "console"
	Ops            = "ops"
	PostgreSQL     = "postgresql"
	Redis          = "redis"
	Prometheus     = "prometheus"
	Alertmanager   = "alertmanager"
	Grafana        = "grafana"
	PeerPrefix     = "peer:"
)

// ComponentOf maps a configuration service name (consent, psi, serving,
// console) to its component name.
func ComponentOf(service string) string {
	switch service {
	case config.ServiceConsent:
		return ConsentService
	case config.ServicePSI:
		return PSIService
	case config.ServiceServing:
		return ModelServing
	}
	return service
}

// Targets are the components a health run probes; an empty field is not
// probed.
type Targets struct {
	// Services maps a fedrisk component (consent-service, psi-service,
	// model-serving, console) to its base URL.
	Services map[string]string
	// Ops is the base URL of the node's operations listener.
	Ops string
	// Peers maps a peer party to the base URL of its node.
	Peers map[string]string

	PostgresURL  string
	RedisURL     string
	Prometheus   string
	Alertmanager string
	Grafana      string

	// Liveness probes only /health of fedrisk listeners: no /ready, no
	// dependencies (what a container healthcheck wants).
	Liveness bool
}

// FromConfig returns the targets a node's configuration names: each
// service it runs at its listen address (127.0.0.1 for a wildcard host;
// https when the listeners have TLS), the ops listener, the peers,
// PostgreSQL when DATABASE_URL is one and Redis when REDIS_URL is set.
func FromConfig(cfg config.Config) Targets {
	t := Targets{Services: map[string]string{}, Peers: map[string]string{}}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	for _, s := range cfg.Services {
		if a := cfg.Addrs[s]; a != "" {
			t.Services[ComponentOf(s)] = scheme + "://" + dialable(a)
		}
	}
	if cfg.OpsAddr != "" {
		t.Ops = "http://" + dialable(cfg.OpsAddr)
	}
	for _, p := range cfg.Peers {
		if p.URL != "" {
			t.Peers[p.Name] = p.URL
		}
		for _, svc := range config.AllServices() {
			if u := p.ServiceURLs[svc]; u != "" && u != p.URL {
				t.Peers[p.Name+"/"+svc] = u
			}
		}
	}
	if strings.HasPrefix(cfg.DatabaseURL, "postgres://") || strings.HasPrefix(cfg.DatabaseURL, "postgresql://") {
		t.PostgresURL = cfg.DatabaseURL
	}
	t.RedisURL = cfg.RedisURL
	return t
}

// dialable turns a listen address into one a client can dial: a wildcard
// or empty host becomes 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// ClientTLS returns the TLS configuration towards fedrisk listeners and
// peers: servers verified against the CA files, the client certificate
// presented for mutual TLS. Nil when neither is given (system roots).
func ClientTLS(caFiles, certFile, keyFile string) (*tls.Config, error) {
	if caFiles == "" && certFile == "" {
		return nil, nil
	}
	var cert *tls.Certificate
	if certFile != "" {
		c, err := pki.LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	cfg := pki.ClientConfig(cert, nil)
	if caFiles != "" {
		pool, err := pki.LoadCertPool(strings.Split(caFiles, ",")...)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	} else {
		cfg.RootCAs = nil // system roots
	}
	return cfg, nil
}

// Prober builds checks with one HTTP client.
type Prober struct {
	// Client talks to fedrisk listeners, peers and the monitoring stack.
	Client *http.Client
	// Token, when set, is sent as a bearer token to fedrisk listeners
	// (never to peers or the monitoring stack).
	Token string
}

// NewProber returns a prober whose client uses tlsCfg (nil: system roots).
func NewProber(tlsCfg *tls.Config, token string) *Prober {
	return &Prober{
		Client: &http.Client{
			Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, DisableKeepAlives: true},
			// Redirects are answers too: a health endpoint must answer itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Token: token,
	}
}

// Checks returns the checks of t in a fixed order: fedrisk services (the
// runbook's order), the console, the ops listener, PostgreSQL, Redis, the
// monitoring stack, then peers.
func (p *Prober) Checks(t Targets) []health.Check {
	var out []health.Check
	fedrisk := func(component, base string) {
		out = append(out, p.fedrisk(component, base, "/health"))
		if !t.Liveness && component != Console {
			out = append(out, p.fedrisk(component, base, "/ready"))
		}
	}
	for _, c := range []string{ConsentService, PSIService, ModelServing, Console} {
		if base := t.Services[c]; base != "" {
			fedrisk(c, base)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(t.Services)) {
		if !slices.Contains([]string{ConsentService, PSIService, ModelServing, Console}, c) {
			fedrisk(c, t.Services[c])
		}
	}
	if t.Ops != "" {
		fedrisk(Ops, t.Ops)
	}
	if t.Liveness {
		return out
	}
	if t.PostgresURL != "" {
		out = append(out, Postgres(t.PostgresURL))
	}
	if t.RedisURL != "" {
		out = append(out, RedisCheck(t.RedisURL))
	}
	if t.Prometheus != "" {
		out = append(out, p.plain(Prometheus, Prometheus, t.Prometheus, "/-/healthy", nil))
	}
	if t.Alertmanager != "" {
		out = append(out, p.plain(Alertmanager, Alertmanager, t.Alertmanager, "/-/healthy", nil))
	}
	if t.Grafana != "" {
		out = append(out, p.plain(Grafana, Grafana, t.Grafana, "/api/health", grafanaBody))
	}
	for _, name := range slices.Sorted(maps.Keys(t.Peers)) {
		out = append(out, p.plain(PeerPrefix+name, PeerPrefix+name, t.Peers[name], "/health", nil))
	}
	return out
}

func join(base, path string) string { return strings.TrimRight(base, "/") + path }

// fedrisk probes a fedrisk listener's path; a failing /ready says which of
// its checks failed.
func (p *Prober) fedrisk(component, base, path string) health.Check {
	u := join(base, path)
	return health.Check{Name: component + " " + path, Component: component, Target: u,
		Probe: func(ctx context.Context) (string, error) { return p.get(ctx, u, p.Token, nil) }}
}

func (p *Prober) plain(name, component, base, path string, check func([]byte) error) health.Check {
	u := join(base, path)
	return health.Check{Name: name, Component: component, Target: u,
		Probe: func(ctx context.Context) (string, error) { return p.get(ctx, u, "", check) }}
}

// get answers the status line on 2xx (after check, when given, accepts the
// body) and an error with the server's reason otherwise.
func (p *Prober) get(ctx context.Context, u, token string, check func([]byte) error) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if token != "" && req.URL.Scheme == "https" {
		// Never in clear text: /health and /ready need no token, and a
		// plain-HTTP target (the ops listener) must not receive one.
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return "", cleanURLError(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("HTTP %d%s", resp.StatusCode, reason(body))
	}
	if check != nil {
		if err := check(body); err != nil {
			return "", fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
		}
	}
	return fmt.Sprintf("HTTP %d", resp.StatusCode), nil
}

// reason extracts fedrisk's JSON error message (e.g. "not ready: cache
// failed").
func reason(body []byte) string {
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != "" {
		return ": " + e.Error.Message
	}
	return ""
}

// cleanURLError drops the repeated method and URL from a client error.
func cleanURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// grafanaBody accepts Grafana's /api/health answer only when its database
// is ok.
func grafanaBody(body []byte) error {
	var h struct {
		Database string `json:"database"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("not Grafana's health answer: %w", err)
	}
	if h.Database != "ok" {
		return fmt.Errorf("database %q", h.Database)
	}
	return nil
}

// Postgres checks that PostgreSQL accepts a connection and answers a
// query (the runbook's pg_isready, with the deployment's credentials).
func Postgres(dsn string) health.Check {
	return health.Check{Name: PostgreSQL, Component: PostgreSQL, Target: config.RedactURL(dsn),
		Probe: func(ctx context.Context) (string, error) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return "", errors.New(scrub(err.Error(), dsn))
			}
			defer conn.Close(context.WithoutCancel(ctx))
			var version string
			if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
				return "", errors.New(scrub(err.Error(), dsn))
			}
			return "PostgreSQL " + strings.Fields(version + " ")[0], nil
		}}
}

// RedisCheck checks that Redis answers PING with the deployment's
// credentials.
func RedisCheck(redisURL string) health.Check {
	return health.Check{Name: Redis, Component: Redis, Target: config.RedactURL(redisURL),
		Probe: func(ctx context.Context) (string, error) {
			opts, err := redis.ParseURL(redisURL)
			if err != nil {
				return "", errors.New("REDIS_URL is not a redis:// URL")
			}
			opts.MaxRetries = -1
			if dl, ok := ctx.Deadline(); ok {
				d := time.Until(dl)
				opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = d, d, d
			}
			c := redis.NewClient(opts)
			defer c.Close()
			pong, err := c.Ping(ctx).Result()
			if err != nil {
				return "", errors.New(scrub(err.Error(), redisURL))
			}
			return pong, nil
		}}
}

// scrub removes a URL's password from an error message, should a driver
// ever repeat it.
func scrub(msg, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}
