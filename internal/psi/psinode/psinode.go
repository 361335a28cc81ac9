// Package psinode assembles the PSI service of one node from the node's
// shared resources.
//
// It builds the SQL store, the guest runner and its scheduler (which resumes
// unfinished guest jobs at start), the host's session manager with its idle-
// session expiry, the consent filter (the node's consent domain, or the
// consent service at consent_service_url over HTTP(S): RemoteConsent) and
// the HTTP API. Results and session state are sealed with the node's key
// manager.
package psinode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// ConsentDomain is the part of the consent service the PSI consent filter
// uses (*consent.Service).
type ConsentDomain interface {
	FilterUsable(ctx context.Context, party, purpose string, subjects []string) ([]bool, error)
}

// Deps is what the PSI service needs from its node.
type Deps struct {
	Config     config.Config
	DB         *sqldb.DB
	Cache      cache.Cache
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// Keys seals results and session state (the node's key manager).
	Keys psijob.Sealer
	// Audit records refused peers; Tokens authenticates bearer tokens;
	// Peers identifies the other parties on the peer API.
	Audit  psiapi.Auditor
	Tokens authhttp.Authenticator
	Peers  authhttp.Peers
	// PeerClient calls the other parties' psi services (mutual TLS when
	// configured).
	PeerClient *http.Client
	// Consent filters inputs by consent: the node's consent domain. Nil:
	// when CONSENT_SERVICE_URL is set, the filter asks that consent service
	// (RemoteConsent, through PeerClient); otherwise jobs with a purpose
	// are refused.
	Consent ConsentDomain
	// ConsentToken is the bearer token (role analyst) sent to the consent
	// service at CONSENT_SERVICE_URL; empty: none (it then answers the
	// node as a loopback caller only while its AUTH_REQUIRED is false).
	ConsentToken string
	// Options tune jobs and sessions (zero: the defaults).
	Options psijob.Options
	// Codec stores session keys for a resume across restarts; nil means
	// psijob.DefaultKeyCodec().
	Codec psijob.KeyCodec
}

// Service is a running PSI service.
type Service struct {
	Jobs     *psijob.Service
	Sessions *psijob.Sessions
	Runner   *psijob.Runner
	Store    *sqlpsi.Store
	api      *psiapi.API
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// New builds the PSI service and starts its scheduler and session expiry.
func New(ctx context.Context, d Deps) (*Service, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.PeerClient == nil {
		d.PeerClient = &http.Client{Timeout: 30 * time.Second}
	}
	if d.Keys == nil {
		return nil, errors.New("psi service: no key manager")
	}
	km := d.Keys
	metrics, err := psijob.NewMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("psi metrics: %w", err)
	}
	opts := d.Options
	opts.Log = d.Log
	codec := d.Codec
	if codec == nil {
		codec = psijob.DefaultKeyCodec()
	}
	store := sqlpsi.New(d.DB)
	inputs := psijob.Inputs{Tables: sqlpsi.NewTables(d.DB), Reserved: sqlpsi.Reserved(), Dir: d.Config.PSIInputs()}
	if d.Config.PSIInputDir == "" {
		// The default input directory: made here, so operators find it.
		if err := os.MkdirAll(inputs.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("psi input directory: %w", err)
		}
	}
	peers := map[string]string{}
	for _, p := range d.Config.Peers {
		peers[p.Name] = p.URLFor(config.ServicePSI)
	}
	allowed := d.Peers.Allowed

	var filter psijob.ConsentFilter
	switch {
	case d.Consent != nil:
		filter = consentFilter{d.Consent}
	case d.Config.ConsentServiceURL != "":
		timeout := d.Options.CallTimeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		filter = &RemoteConsent{URL: d.Config.ConsentServiceURL, Client: d.PeerClient, Token: d.ConsentToken, Timeout: timeout}
		if plainRemote(d.Config.ConsentServiceURL) {
			d.Log.Warn("consent_service_url is plain HTTP to another host: the identifiers of PSI jobs with a purpose travel unencrypted", "url", d.Config.ConsentServiceURL)
		}
	}
	party := d.Config.Party
	dial := func(j psijob.Job) (psijob.Peer, error) {
		url := j.Peer.URL
		if u, ok := peers[j.Peer.Party]; ok {
			url = u // the configuration wins over what the job recorded
		}
		if url == "" {
			return nil, fmt.Errorf("%q is not a registered peer", j.Peer.Party)
		}
		return psiapi.NewClient(url, d.PeerClient, party), nil
	}
	rc := resultCache{d.Cache}
	runner := psijob.NewRunner(psijob.RunnerDeps{Store: store, Inputs: inputs, Peers: dial, Sealer: km, Codec: codec,
		Consent: filter, Cache: rc, Metrics: metrics}, opts)
	sessions := psijob.NewSessions(psijob.SessionsDeps{Store: store, Inputs: inputs, Sealer: km, Codec: codec, Metrics: metrics, Allowed: allowed}, opts)
	role := psijob.RoleGuest
	if d.Config.Role == string(psijob.RoleHost) {
		role = psijob.RoleHost
	}
	jobs := psijob.NewService(psijob.ServiceDeps{Store: store, Inputs: inputs, Runner: runner, Sessions: sessions, Sealer: km,
		Cache: rc, Peers: peers, Role: role, Consent: filter != nil}, opts)
	api := psiapi.New(jobs, sessions, d.Tokens, psiapi.Options{
		AuthRequired: d.Config.AuthRequired,
		Peers:        d.Peers,
		Auditor:      d.Audit,
		Log:          d.Log,
	})
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{Jobs: jobs, Sessions: sessions, Runner: runner, Store: store, api: api, cancel: cancel}
	jobs.Start(bg)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); sessions.RunExpiry(bg) }()
	return s, nil
}

// Mount adds the PSI routes.
func (s *Service) Mount(mux *http.ServeMux) { s.api.Mount(mux) }

// Drain interrupts the running guest jobs (they release their leases and
// resume from their checkpoints at the next start).
func (s *Service) Drain() { s.Jobs.Stop() }

// Close stops the background work.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.Jobs.Stop()
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// consentFilter adapts the consent domain to psijob.ConsentFilter.
type consentFilter struct{ d ConsentDomain }

func (f consentFilter) Filter(ctx context.Context, party, purpose string, ids []string) ([]bool, error) {
	return f.d.FilterUsable(ctx, party, purpose, ids)
}

// resultCache keeps finished results in the node cache (psi_results, 30
// minutes by default).
type resultCache struct{ c cache.Cache }

func (r resultCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if r.c == nil {
		return nil, false, nil
	}
	return r.c.Get(ctx, cache.PSIResults(), key)
}

func (r resultCache) Set(ctx context.Context, key string, val []byte) error {
	if r.c == nil {
		return nil
	}
	return r.c.Set(ctx, cache.PSIResults(), key, val, 0)
}
