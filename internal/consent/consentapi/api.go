// Package consentapi is the HTTP transport of the consent service, and the
// host's verifier of the tokens it issues.
//
// It holds the JSON request and response shapes, the mapping of domain
// errors to statuses, authentication (bearer tokens with roles, peer
// certificates, or loopback only while AUTH_REQUIRED is false), the JWKS,
// the OpenAPI document and the revocation stream that hosts follow — and, on
// the host's side, the Verifier that checks a guest's tokens against that
// JWKS and stream.
package consentapi

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Service is the consent domain as the API uses it.
type Service interface {
	CreatePurpose(ctx context.Context, r consent.PurposeRequest) (consent.Purpose, error)
	PublishPolicy(ctx context.Context, purpose, text, actor string) (consent.Policy, error)
	GetPurpose(ctx context.Context, id string) (consent.Purpose, error)
	ListPurposes(ctx context.Context) ([]consent.Purpose, error)
	GetPolicy(ctx context.Context, purpose string, version int) (consent.Policy, error)
	Grant(ctx context.Context, r consent.GrantRequest) (consent.Consent, bool, error)
	Get(ctx context.Context, id string) (consent.Consent, error)
	ListBySubject(ctx context.Context, subject string) ([]consent.Consent, error)
	Withdraw(ctx context.Context, id, actor string) (consent.Consent, error)
	Export(ctx context.Context, subject, actor string) (consent.Export, error)
	DeleteSubject(ctx context.Context, subject, actor string) (consent.DeleteResult, error)
	IssueToken(ctx context.Context, consentID, actor string) (consent.Token, error)
	Verify(ctx context.Context, token string, want consent.Expect, actor string) (consent.Claims, error)
	// FilterUsable reports, for each raw identifier, whether its subject has
	// a usable consent for (party, purpose).
	FilterUsable(ctx context.Context, party, purpose string, subjects []string) ([]bool, error)
}

// JWKSource publishes the public keys.
type JWKSource interface {
	JWKSJSON(ctx context.Context) ([]byte, error)
}

// Authenticator resolves bearer tokens.
type Authenticator = authhttp.Authenticator

// Revocation is one event of the revocation stream (consent.Revocation).
type Revocation = consent.Revocation

// Revocations reads revocations from the audit log, which is written in the
// same transaction as the change: nothing acknowledged is missed, and a
// host that reconnects resumes where it left off (Last-Event-ID).
type Revocations interface {
	Head(ctx context.Context) (int64, error)
	// Since returns the revocations for party ("" for every party) after
	// seq, and the seq up to which the log has been read.
	Since(ctx context.Context, party string, after int64, limit int) ([]Revocation, int64, error)
}

// Options configure the API.
type Options struct {
	AuthRequired bool
	// PeerParty names the verified party of a mutual-TLS client, "" when
	// the connection carries no verified client certificate.
	PeerParty func(cs *tls.ConnectionState) string
	// Auditor records refused credentials (security-relevant failures).
	Auditor consent.Auditor
	// StreamEvery is how often the revocation stream reads the log and
	// sends a heartbeat; hosts trust cached verifications only while
	// heartbeats keep coming. Default 250 ms.
	StreamEvery time.Duration
	// Wake, if set, returns a channel closed at the next revocation, so
	// streams send it at once.
	Wake func() <-chan struct{}
	Log  *slog.Logger
}

// API serves the consent endpoints.
type API struct {
	svc   Service
	jwks  JWKSource
	guard authhttp.Guard
	revs  Revocations
	opts  Options
	stop  chan struct{} // closed by Drain: streams end
	once  sync.Once
}

// Drain ends the revocation streams (at shutdown).
func (a *API) Drain() { a.once.Do(func() { close(a.stop) }) }

// New returns the API.
func New(svc Service, jwks JWKSource, authn Authenticator, revs Revocations, opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.StreamEvery <= 0 {
		opts.StreamEvery = 250 * time.Millisecond
	}
	guard := authhttp.Guard{Tokens: authn, AuthRequired: opts.AuthRequired, PeerParty: opts.PeerParty, Log: opts.Log, MapError: mapError}
	if opts.Auditor != nil {
		guard.Auditor = opts.Auditor
	}
	return &API{svc: svc, jwks: jwks, guard: guard, revs: revs, opts: opts, stop: make(chan struct{})}
}

// Mount adds the consent routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	const p = "/consent/v1"
	admin := []auth.Role{auth.RoleAdmin}
	operator := []auth.Role{auth.RoleOperator}
	analyst := []auth.Role{auth.RoleAnalyst}
	partner := []auth.Role{auth.RolePartner, auth.RoleOperator}

	mux.HandleFunc("GET /.well-known/jwks.json", a.jwksHandler)
	mux.HandleFunc("GET /consent/.well-known/jwks.json", a.jwksHandler)
	mux.HandleFunc("GET /consent/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})

	mux.HandleFunc("GET "+p+"/purposes", a.guard.With(analyst, a.listPurposes))
	mux.HandleFunc("POST "+p+"/purposes", a.guard.With(admin, a.createPurpose))
	mux.HandleFunc("GET "+p+"/purposes/{purpose}", a.guard.With(analyst, a.getPurpose))
	mux.HandleFunc("POST "+p+"/purposes/{purpose}/policies", a.guard.With(admin, a.publishPolicy))
	mux.HandleFunc("GET "+p+"/purposes/{purpose}/policies/{version}", a.guard.With(analyst, a.getPolicy))

	mux.HandleFunc("POST "+p+"/consents", a.guard.With(operator, a.grant))
	mux.HandleFunc("GET "+p+"/consents/{id}", a.guard.With(analyst, a.getConsent))
	mux.HandleFunc("POST "+p+"/consents/{id}/withdraw", a.guard.With(operator, a.withdraw))
	mux.HandleFunc("POST "+p+"/consents/{id}/tokens", a.guard.With(operator, a.issueToken))

	// Subject identifiers travel in bodies, never in paths or query strings
	// that proxies and access logs keep.
	mux.HandleFunc("POST "+p+"/subjects/consents", a.guard.With(analyst, a.listSubject))
	mux.HandleFunc("POST "+p+"/subjects/export", a.guard.With(operator, a.export))
	mux.HandleFunc("POST "+p+"/subjects/delete", a.guard.With(admin, a.deleteSubject))
	// Which of a list of subjects may take part in a PSI job for (party,
	// purpose): what analysts may read anyway, never for peers.
	mux.HandleFunc("POST "+p+"/subjects/filter", a.guard.With(analyst, a.filterSubjects))

	mux.HandleFunc("POST "+p+"/tokens/introspect", a.guard.With(partner, a.introspect))
	mux.HandleFunc("GET "+p+"/revocations", a.guard.With(partner, a.revocationStream))
}

func principal(ctx context.Context) auth.Principal { return authhttp.PrincipalOf(ctx) }

// mapError turns domain errors into HTTP errors with client-safe messages.
func mapError(err error) error {
	var (
		we *web.Error
		ve *consent.ValidationError
		te *consent.TokenError
	)
	switch {
	case errors.As(err, &we):
		return we
	case errors.As(err, &ve):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_field", Message: ve.Error(), Cause: err}
	case errors.As(err, &te):
		return &web.Error{Status: http.StatusUnauthorized, Code: "token_" + te.Code, Message: te.Error(), Cause: err}
	case errors.Is(err, consent.ErrNotFound):
		return &web.Error{Status: http.StatusNotFound, Code: "not_found", Message: "not found", Cause: err}
	case errors.Is(err, consent.ErrUnknownPurpose):
		return &web.Error{Status: http.StatusUnprocessableEntity, Code: "unknown_purpose", Message: "unknown purpose", Cause: err}
	case errors.Is(err, consent.ErrOutdatedPolicy):
		return &web.Error{Status: http.StatusConflict, Code: "outdated_policy", Message: lastPart(err), Cause: err}
	case errors.Is(err, consent.ErrPurposeExists):
		return &web.Error{Status: http.StatusConflict, Code: "purpose_exists", Message: "purpose already exists", Cause: err}
	case errors.Is(err, consent.ErrConsentExists):
		return &web.Error{Status: http.StatusConflict, Code: "consent_exists", Message: lastPart(err), Cause: err}
	case errors.Is(err, consent.ErrNotActive):
		return &web.Error{Status: http.StatusConflict, Code: "consent_not_active", Message: lastPart(err), Cause: err}
	case errors.Is(err, consent.ErrIdempotencyConflict):
		return &web.Error{Status: http.StatusConflict, Code: "idempotency_key_reused", Message: "this Idempotency-Key was used for a different request", Cause: err}
	case errors.Is(err, consent.ErrKeyUnavailable):
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "signing keys cannot be read right now", Cause: err}
	case errors.Is(err, consent.ErrSubjectDeleted), errors.Is(err, consent.ErrKeyDestroyed):
		return &web.Error{Status: http.StatusGone, Code: "subject_deleted", Message: "the subject was deleted", Cause: err}
	case errors.Is(err, consent.ErrInvalid):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid", Message: lastPart(err), Cause: err}
	}
	return err
}

// lastPart drops the "grant: " style prefixes of wrapped domain errors.
func lastPart(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"grant: ", "withdraw: ", "issue token: ", "export: ", "delete subject: ", "publish policy: ", "create purpose: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

func (a *API) jwksHandler(w http.ResponseWriter, r *http.Request) {
	b, err := a.jwks.JWKSJSON(r.Context())
	if err != nil {
		web.WriteError(w, r, a.opts.Log, err)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Write(b)
}

func pathInt(r *http.Request, name string) (int, error) {
	v, err := strconv.Atoi(r.PathValue(name))
	if err != nil || v <= 0 || v > 1<<30 {
		return 0, web.Errorf(http.StatusBadRequest, "invalid_path", "%s must be a positive integer", name)
	}
	return v, nil
}

// timeOrZero parses an optional RFC 3339 time field.
func timeOrZero(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, web.Errorf(http.StatusBadRequest, "invalid_field", "%s must be an RFC 3339 time", field)
	}
	return t, nil
}
