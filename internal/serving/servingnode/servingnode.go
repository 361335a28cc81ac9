// Package servingnode assembles the scoring service (model-serving) of one
// node.
//
// It builds the feature store (features over sqlfeatures, cached in the node
// cache, with its Feast-shaped API under /score/features), and by role
//
//   - on a guest, serving.Guest: consent tokens verified (and issued from
//     consent ids) by the node's consent domain (or the consent service at
//     consent_service_url), partial scores asked of the
//     model's hosts through the node's peer client (servingapi.Client);
//   - on a host, serving.Host: tokens verified per guest peer by a
//     consentapi.Verifier following that guest's revocation stream,
//     releases through privacy.Releaser charged to the SQL ledger
//     (sqlprivacy), whose initial policy for scoring.purpose comes from the
//     configuration, and the privacy-budget gauges refreshed after charges
//     and every ten seconds;
//
// and the HTTP API (servingapi) and metrics (serving.Metrics).
package servingnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featuresapi"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/privacy/sqlprivacy"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// FeaturesPrefix is where the feature store's Feast-shaped API is mounted.
const FeaturesPrefix = "/score/features"

// BudgetRefresh is how often the budget gauges are refreshed without
// charges.
const BudgetRefresh = 10 * time.Second

// ConsentDomain is the part of the consent service a guest uses in process
// (*consent.Service).
type ConsentDomain interface {
	Verify(ctx context.Context, token string, want consent.Expect, actor string) (consent.Claims, error)
	IssueToken(ctx context.Context, consentID, actor string) (consent.Token, error)
}

// Deps is what the scoring service needs from its node.
type Deps struct {
	Config     config.Config
	DB         *sqldb.DB
	Cache      cache.Cache
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// PeerClient calls the other parties (mutual TLS when configured).
	PeerClient *http.Client
	Build      string
	// Models gives the model halves (the registry, through an adapter).
	Models serving.Models
	// Tokens authenticates bearer tokens; Peers identifies the other
	// parties on the peer routes.
	Tokens authhttp.Authenticator
	Peers  authhttp.Peers
	// SubjectRefKey is the federation's key of per-host subject references.
	SubjectRefKey []byte
	// Consent is the guest's consent domain in this process (the node's).
	// Nil: the consent service at consent_service_url.
	Consent ConsentDomain
	// ConsentToken is the bearer token (role operator) sent to the consent
	// service at consent_service_url to issue tokens from consent ids.
	ConsentToken string
	// Views replaces the views of scoring.feature_views (tests).
	Views *features.Registry
	// Audit records budget policy changes (the node's audit log); nil
	// records none.
	Audit sqlprivacy.Auditor
}

// Service is a running scoring service.
type Service struct {
	Guest    *serving.Guest // nil on a host
	Host     *serving.Host  // nil on a guest
	Features *features.Store
	Ledger   *sqlprivacy.Ledger // nil on a guest
	Metrics  *serving.Metrics

	api       *servingapi.API
	featAPI   *featuresapi.API
	verifiers map[string]*hostVerifier
	refresh   chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	once      sync.Once
}

// New builds the scoring service and starts its background work.
func New(ctx context.Context, d Deps) (_ *Service, err error) {
	cfg, sc := d.Config, d.Config.Scoring
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.PeerClient == nil {
		d.PeerClient = &http.Client{Timeout: 10 * time.Second}
	}
	if d.Models == nil {
		return nil, errors.New("scoring: no model source")
	}
	views := d.Views
	if views == nil {
		if sc.FeatureViews != "" {
			views, err = features.LoadViews(sc.FeatureViews)
		} else {
			views, err = features.ExampleViews()
		}
		if err != nil {
			return nil, fmt.Errorf("scoring: feature views: %w", err)
		}
	}
	store, err := features.New(sqlfeatures.New(d.DB), views, features.Options{Cache: d.Cache, Registerer: d.Registerer, Log: d.Log})
	if err != nil {
		return nil, fmt.Errorf("scoring: feature store: %w", err)
	}
	metrics, err := serving.NewMetrics(d.Registerer, cfg.Version, d.Build)
	if err != nil {
		return nil, fmt.Errorf("scoring: metrics: %w", err)
	}
	refKey := d.SubjectRefKey
	peers := map[string]config.Peer{}
	for _, p := range cfg.Peers {
		peers[p.Name] = p
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{Features: store, Metrics: metrics, verifiers: map[string]*hostVerifier{}, refresh: make(chan struct{}, 1), cancel: cancel}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	opts := servingapi.Options{
		Tokens: d.Tokens, AuthRequired: cfg.AuthRequired, Purpose: sc.Purpose, Log: d.Log, Peers: d.Peers,
	}
	scale := serving.Scale{BaseScore: sc.BaseScore, BaseOdds: sc.BaseOdds, PDO: sc.PDO, Min: sc.MinScore, Max: sc.MaxScore}

	if cfg.Role == "host" {
		if _, ok := views.View(sc.HostView); !ok {
			return nil, fmt.Errorf("scoring: scoring.host_view %q is not defined in the feature views", sc.HostView)
		}
		if err := s.buildHost(ctx, bg, d, store, metrics, peers); err != nil {
			return nil, err
		}
		opts.Host, opts.Budgets, opts.Changed = s.Host, s.Ledger, s.budgetsChanged
	} else {
		if _, ok := views.View(sc.GuestView); !ok {
			return nil, fmt.Errorf("scoring: scoring.guest_view %q is not defined in the feature views", sc.GuestView)
		}
		verifier, issuer, err := s.guestConsent(bg, d)
		if err != nil {
			return nil, err
		}
		client := &servingapi.Client{HTTP: d.PeerClient, URL: func(host string) (string, bool) {
			p, ok := peers[host]
			if !ok {
				return "", false
			}
			return p.URLFor(config.ServiceServing), true
		}}
		if !cfg.TLS.Enabled() {
			client.Party = cfg.Party
		}
		gopts := serving.GuestOptions{
			Party: cfg.Party, Model: sc.Model, Models: d.Models, Features: store, View: sc.GuestView,
			Consent: verifier, Issuer: issuer, Hosts: client, Purpose: sc.Purpose,
			DefaultRef: cfg.Version, Release: cfg.Version, Deadline: sc.HostDeadline, Fallback: sc.Fallback,
			Scale: scale, Reasons: sc.Reasons, Metrics: metrics, Log: d.Log,
		}
		if refKey != nil {
			gopts.HostRef = func(host, id string) string { return consent.HostRef(refKey, host, id) }
			if sc.GuestEntity == "ref" {
				gopts.EntityKey = func(id string) string { return consent.HostRef(refKey, cfg.Party, id) }
			}
		} else {
			d.Log.Warn("subject_ref_key is not set: scores cannot ask hosts for partial scores")
			if sc.GuestEntity == "ref" {
				return nil, errors.New("scoring: scoring.guest_entity=ref needs subject_ref_key")
			}
		}
		if s.Guest, err = serving.NewGuest(gopts); err != nil {
			return nil, err
		}
		opts.Guest = s.Guest
	}
	s.api = servingapi.New(opts)
	s.featAPI = featuresapi.New(store, d.Tokens, featuresapi.Options{Prefix: FeaturesPrefix, AuthRequired: cfg.AuthRequired, Log: d.Log})
	return s, nil
}

// buildHost builds the host side: ledger, releaser, verifiers, gauges.
func (s *Service) buildHost(ctx, bg context.Context, d Deps, store *features.Store, metrics *serving.Metrics, peers map[string]config.Peer) error {
	cfg, sc := d.Config, d.Config.Scoring
	ledger := sqlprivacy.New(d.DB, sqlprivacy.Options{Host: cfg.Party, Audit: d.Audit})
	s.Ledger = ledger
	if err := initialPolicy(ctx, ledger, sc); err != nil {
		return err
	}
	mech, err := Mechanism(sc)
	if err != nil {
		return err
	}
	rel, err := privacy.NewReleaser(privacy.ReleaserOptions{Mechanism: mech, Ledger: ledger, Cache: d.Cache, Window: sc.ReleaseWindow})
	if err != nil {
		return fmt.Errorf("scoring: releaser: %w", err)
	}
	for name, p := range peers {
		v := consentapi.NewVerifier(consentapi.VerifierOptions{GuestURL: p.URLFor(config.ServiceConsent), Issuer: consent.Issuer(name),
			Audience: cfg.Party, Client: d.PeerClient, Log: d.Log.With("guest", name)})
		hv := &hostVerifier{v: v, party: cfg.Party}
		s.verifiers[name] = hv
		s.wg.Add(2)
		go func() { defer s.wg.Done(); v.Run(bg) }()
		go func() { defer s.wg.Done(); hv.prefetch(bg) }()
	}
	s.Host, err = serving.NewHost(serving.HostOptions{
		Party: cfg.Party, Models: d.Models, Features: store, View: sc.HostView,
		Verifier: func(party string) (serving.ConsentVerifier, bool) {
			v, ok := s.verifiers[party]
			return v, ok
		},
		Releaser: rel, Purposes: []string{sc.Purpose}, Charged: s.budgetsChanged, Metrics: metrics, Log: d.Log,
	})
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.runGauges(bg, ledger, metrics, d.Log) }()
	return nil
}

// Mechanism returns the release mechanism of the scoring settings.
func Mechanism(sc config.Scoring) (privacy.Mechanism, error) {
	eps, err := privacy.EpsilonAmount(sc.Epsilon)
	if err != nil {
		return privacy.Mechanism{}, fmt.Errorf("scoring.epsilon: %w", err)
	}
	switch sc.Noise {
	case "none":
		return privacy.NoNoise(sc.Clip)
	case "gaussian":
		return privacy.Gaussian(sc.Clip, eps, sc.Delta)
	case "laplace":
		return privacy.Laplace(sc.Clip, eps)
	}
	return privacy.Mechanism{}, fmt.Errorf("scoring.noise %q: want laplace, gaussian or none", sc.Noise)
}

// initialPolicy gives scoring.purpose the configured budget policy when it
// has none; a policy set through the admin API is kept across restarts.
func initialPolicy(ctx context.Context, l privacy.Ledger, sc config.Scoring) error {
	if _, err := l.Policy(ctx, sc.Purpose); err == nil {
		return nil
	} else if !errors.Is(err, privacy.ErrNoPolicy) {
		return fmt.Errorf("scoring: read budget policy: %w", err)
	}
	total, err := privacy.EpsilonAmount(sc.BudgetTotal)
	if err != nil {
		return fmt.Errorf("scoring.budget_total: %w", err)
	}
	p := privacy.Policy{Window: sc.BudgetWindow, Total: total, OnExhausted: privacy.ExhaustionPolicy(sc.BudgetOnExhausted)}
	if err := l.SetPolicy(ctx, sc.Purpose, p, "config"); err != nil {
		return fmt.Errorf("scoring: set budget policy: %w", err)
	}
	return nil
}

// budgetsChanged asks for a refresh of the budget gauges (coalesced).
func (s *Service) budgetsChanged() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// runGauges keeps the budget gauges current: after charges (at most every
// 200 ms) and every BudgetRefresh.
func (s *Service) runGauges(ctx context.Context, l privacy.Ledger, m *serving.Metrics, log *slog.Logger) {
	tick := time.NewTicker(BudgetRefresh)
	defer tick.Stop()
	update := func() {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		gs, err := l.Snapshot(uctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("privacy budget snapshot failed", "err", err)
			}
			return
		}
		m.SetBudgets(gs)
	}
	update()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.refresh:
		}
		update()
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RefreshBudgets updates the budget gauges now (tests, admin tools).
func (s *Service) RefreshBudgets(ctx context.Context) error {
	if s.Ledger == nil {
		return nil
	}
	gs, err := s.Ledger.Snapshot(ctx)
	if err != nil {
		return err
	}
	s.Metrics.SetBudgets(gs)
	return nil
}

// Mount adds the scoring and feature-store routes.
func (s *Service) Mount(mux *http.ServeMux) {
	s.api.Mount(mux)
	s.featAPI.Mount(mux)
}

// Close stops the background work.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// guestConsent builds the guest's token verifier and issuer: the node's
// consent domain, or the consent service at consent_service_url.
func (s *Service) guestConsent(bg context.Context, d Deps) (serving.ConsentVerifier, serving.TokenIssuer, error) {
	cfg := d.Config
	if d.Consent == nil {
		if cfg.ConsentServiceURL == "" {
			return nil, nil, errors.New("scoring: a guest needs the node's consent domain or consent_service_url")
		}
		r := &remoteConsent{url: strings.TrimRight(cfg.ConsentServiceURL, "/"), client: d.PeerClient, token: d.ConsentToken,
			verifiers: map[string]*consentapi.Verifier{}}
		for _, p := range cfg.Peers {
			v := consentapi.NewVerifier(consentapi.VerifierOptions{GuestURL: r.url, Issuer: consent.Issuer(cfg.Party), Audience: p.Name,
				Client: d.PeerClient, Log: d.Log.With("consent_audience", p.Name)})
			r.verifiers[p.Name] = v
			s.wg.Add(1)
			go func() { defer s.wg.Done(); v.Run(bg) }()
		}
		return r, r, nil
	}
	lc := &localConsent{d: d.Consent, now: time.Now, issued: map[string]issuedToken{}}
	return lc, lc, nil
}

// audience reads a token's audience before it is verified: the verifier
// then requires exactly that audience, and the guest that it is a host of
// the model.
func audience(token string) (string, error) {
	var c consent.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || len(c.Audience) != 1 {
		return "", &serving.Error{Kind: serving.ErrConsent, Code: "consent_rejected", Message: "consent token rejected: malformed"}
	}
	return c.Audience[0], nil
}

func verified(c consent.Claims, aud string) serving.Verified {
	return serving.Verified{ConsentID: c.ConsentID, Subject: c.Subject, Audience: aud, HostRef: c.HostRef}
}

func tokenError(err error) error {
	var te *consent.TokenError
	if errors.As(err, &te) {
		return &serving.Error{Kind: serving.ErrConsent, Code: "consent_rejected", Message: "consent token rejected: " + te.Code, Cause: err}
	}
	return &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the consent token could not be checked", Cause: err}
}

// localConsent is the guest's consent service in this process. Tokens it
// issues from a consent id are kept and handed out again until shortly
// before they expire: signing one costs more than the rest of a score, and
// every token is verified (withdrawal included) before it is used.
type localConsent struct {
	d   ConsentDomain
	now func() time.Time

	mu     sync.Mutex
	issued map[string]issuedToken // by consent id
}

type issuedToken struct {
	token string
	until time.Time // handed out again until then
}

// maxIssued bounds the tokens kept; when full, the map starts over.
const maxIssued = 100_000

func (l *localConsent) Verify(ctx context.Context, token, purpose string) (serving.Verified, error) {
	aud, err := audience(token)
	if err != nil {
		return serving.Verified{}, err
	}
	c, err := l.d.Verify(ctx, token, consent.Expect{Audience: aud, Purpose: purpose}, "model-serving")
	if err != nil {
		return serving.Verified{}, tokenError(err)
	}
	return verified(c, aud), nil
}

func (l *localConsent) Issue(ctx context.Context, id string) (string, error) {
	now := l.now()
	l.mu.Lock()
	it, ok := l.issued[id]
	l.mu.Unlock()
	if ok && now.Before(it.until) {
		return it.token, nil
	}
	t, err := l.d.IssueToken(ctx, id, "model-serving")
	switch {
	case err == nil:
		// Reuse for half the token's remaining life (at most 5 minutes),
		// so a handed-out token is always valid for a while yet.
		keep := min(t.ExpiresAt.Sub(now)/2, 5*time.Minute)
		if keep > 0 {
			l.mu.Lock()
			if len(l.issued) >= maxIssued {
				clear(l.issued)
			}
			l.issued[id] = issuedToken{token: t.Token, until: now.Add(keep)}
			l.mu.Unlock()
		}
		return t.Token, nil
	case errors.Is(err, consent.ErrNotFound):
		return "", &serving.Error{Kind: serving.ErrNotFound, Code: "consent_not_found", Message: "no such consent", Cause: err}
	case errors.Is(err, consent.ErrNotActive), errors.Is(err, consent.ErrSubjectDeleted):
		return "", &serving.Error{Kind: serving.ErrConsent, Code: "consent_not_active", Message: "the consent is not active", Cause: err}
	}
	return "", &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "a consent token could not be issued", Cause: err}
}

// hostVerifier checks a guest's tokens for this host. Until the guest's
// JWKS has been fetched once, verifications wait for that fetch: the
// verifier refuses kids it does not know while a fetch is recent, which
// would refuse every token that arrives together with the first one.
type hostVerifier struct {
	v     *consentapi.Verifier
	party string
	mu    sync.Mutex
	ready atomic.Bool
}

// fetchKeys fetches the guest's JWKS once.
func (h *hostVerifier) fetchKeys(ctx context.Context) error {
	if h.ready.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready.Load() {
		return nil
	}
	if err := h.v.RefreshKeys(ctx); err != nil {
		return err
	}
	h.ready.Store(true)
	return nil
}

// prefetch fetches the keys in the background until it succeeds.
func (h *hostVerifier) prefetch(ctx context.Context) {
	for ctx.Err() == nil && h.fetchKeys(ctx) != nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (h *hostVerifier) Verify(ctx context.Context, token, purpose string) (serving.Verified, error) {
	if err := h.fetchKeys(ctx); err != nil {
		return serving.Verified{}, &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the guest's consent keys could not be fetched", Cause: err}
	}
	c, err := h.v.Verify(ctx, token, purpose)
	if err != nil {
		if errors.Is(err, consentapi.ErrUnavailable) {
			return serving.Verified{}, &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the guest's consent service could not be reached", Cause: err}
		}
		return serving.Verified{}, tokenError(err)
	}
	return verified(c, h.party), nil
}

// remoteConsent is the guest's consent service at consent_service_url.
type remoteConsent struct {
	url       string
	client    *http.Client
	token     string
	verifiers map[string]*consentapi.Verifier // by audience
}

func (r *remoteConsent) Verify(ctx context.Context, token, purpose string) (serving.Verified, error) {
	aud, err := audience(token)
	if err != nil {
		return serving.Verified{}, err
	}
	v, ok := r.verifiers[aud]
	if !ok {
		return serving.Verified{}, &serving.Error{Kind: serving.ErrConsent, Code: "consent_rejected", Message: "consent token rejected: wrong_audience"}
	}
	c, err := v.Verify(ctx, token, purpose)
	if err != nil {
		if errors.Is(err, consentapi.ErrUnavailable) {
			return serving.Verified{}, &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the consent service could not be reached", Cause: err}
		}
		return serving.Verified{}, tokenError(err)
	}
	return verified(c, aud), nil
}

func (r *remoteConsent) Issue(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/consent/v1/consents/"+url.PathEscape(id)+"/tokens", bytes.NewReader([]byte("{}")))
	if err != nil {
		return "", &serving.Error{Kind: serving.ErrInvalid, Code: "invalid_consent_id", Message: "invalid consent id"}
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the consent service could not be reached", Cause: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", &serving.Error{Kind: serving.ErrNotFound, Code: "consent_not_found", Message: "no such consent"}
	case resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusUnprocessableEntity:
		return "", &serving.Error{Kind: serving.ErrConsent, Code: "consent_not_active", Message: "the consent is not active"}
	case resp.StatusCode/100 != 2:
		return "", &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: fmt.Sprintf("the consent service answered %d", resp.StatusCode)}
	}
	var t consent.Token
	if err := json.Unmarshal(data, &t); err != nil || t.Token == "" {
		return "", &serving.Error{Kind: serving.ErrUnavailable, Code: "consent_unavailable", Message: "the consent service's answer could not be read", Cause: err}
	}
	return t.Token, nil
}

// Streaming reports whether the host follows the revocation stream of
// guest party (false on a guest or for an unknown party).
func (s *Service) Streaming(party string) bool {
	v, ok := s.verifiers[party]
	return ok && v.v.Streaming()
}
