// Package registryapi is the HTTP admin API of the model registry, mounted
// on the serving listener under /score.
//
// Its routes:
//
//	GET  {prefix}/v1/models                              every model, its versions and labels
//	GET  {prefix}/v1/models/{id}                         one model, with its label history
//	GET  {prefix}/v1/models/{id}/versions/{ref}[?role=guest|host][&half=1]
//	                                                     one half's metadata and card; ref is a
//	                                                     version, "stable" or "canary"; half=1
//	                                                     adds this party's half document
//	GET  {prefix}/v1/models/{id}/versions/{ref}/half[?role=guest|host]
//	                                                     the half document byte for byte as
//	                                                     registered (its SHA-256 is the digest,
//	                                                     also sent as X-Model-Digest)
//	POST {prefix}/v1/models/{id}/promote   {"version": "2", "label": "stable"}
//	POST {prefix}/v1/models/{id}/rollback  {"label": "stable"}
//
// Reading needs the analyst role (or higher), the half document and label
// changes the operator role (or admin); while AUTH_REQUIRED is false
// loopback callers get in without a token. Unknown models, versions and
// labels answer 404, bad input 400 (changing nothing), a rollback with
// nothing to go back to 409.
package registryapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Registry is the registry as the API uses it (*registry.Registry).
type Registry interface {
	Models(ctx context.Context) ([]registry.Model, error)
	Model(ctx context.Context, modelID string) (registry.Model, error)
	Get(ctx context.Context, modelID, ref, role string) (registry.Entry, error)
	Promote(ctx context.Context, modelID, version, label, actor string) (registry.LabelChange, error)
	Rollback(ctx context.Context, modelID, label, actor string) (registry.LabelChange, error)
}

// Authenticator resolves bearer tokens (*auth.Tokens).
type Authenticator = authhttp.Authenticator

// Options configure the API. Zero values select the defaults.
type Options struct {
	// Prefix is put before the routes (default "/score").
	Prefix       string
	AuthRequired bool
	Log          *slog.Logger
}

// API serves the registry endpoints.
type API struct {
	reg    Registry
	guard  authhttp.Guard
	prefix string
}

// New returns the API. authn may be nil when no bearer tokens exist (then
// only loopback callers with AUTH_REQUIRED=false get in).
func New(reg Registry, authn Authenticator, opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Prefix == "" {
		opts.Prefix = "/score"
	}
	return &API{reg: reg, prefix: strings.TrimSuffix(opts.Prefix, "/"),
		guard: authhttp.Guard{Tokens: authn, AuthRequired: opts.AuthRequired, Log: opts.Log, MapError: mapError}}
}

// Mount adds the routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	analyst := []auth.Role{auth.RoleAnalyst}
	operator := []auth.Role{auth.RoleOperator}
	p := a.prefix + "/v1/models"
	mux.HandleFunc("GET "+p, a.guard.With(analyst, a.list))
	mux.HandleFunc("GET "+p+"/{id}", a.guard.With(analyst, a.model))
	mux.HandleFunc("GET "+p+"/{id}/versions/{ref}", a.guard.With(analyst, a.version))
	mux.HandleFunc("GET "+p+"/{id}/versions/{ref}/half", a.guard.With(operator, a.half))
	mux.HandleFunc("POST "+p+"/{id}/promote", a.guard.With(operator, a.promote))
	mux.HandleFunc("POST "+p+"/{id}/rollback", a.guard.With(operator, a.rollback))
}

func mapError(err error) error {
	msg := func() string {
		s := err.Error()
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		return s
	}
	switch {
	case errors.Is(err, registry.ErrInvalid):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg(), Cause: err}
	case errors.Is(err, registry.ErrNotFound):
		return &web.Error{Status: http.StatusNotFound, Code: "not_found", Message: msg(), Cause: err}
	case errors.Is(err, registry.ErrNoRollback):
		return &web.Error{Status: http.StatusConflict, Code: "nothing_to_roll_back", Message: msg(), Cause: err}
	case errors.Is(err, registry.ErrConflict):
		return &web.Error{Status: http.StatusConflict, Code: "conflict", Message: msg(), Cause: err}
	}
	return err
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.reg.Models(r.Context())
	if err != nil {
		return err
	}
	out := ModelsResponse{Models: make([]ModelBody, 0, len(ms))}
	for _, m := range ms {
		out.Models = append(out.Models, modelBody(m))
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) model(w http.ResponseWriter, r *http.Request) error {
	m, err := a.reg.Model(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, modelBody(m))
	return nil
}

// Headers of the half document.
const (
	DigestHeader  = "X-Model-Digest"
	VersionHeader = "X-Model-Version"
	RoleHeader    = "X-Model-Role"
)

func roleParam(r *http.Request) (string, error) {
	role := r.URL.Query().Get("role")
	if role != "" && registry.ValidRole(role) != nil {
		return "", web.Errorf(http.StatusBadRequest, "invalid_request", "role must be %s or %s", registry.RoleGuest, registry.RoleHost)
	}
	return role, nil
}

func (a *API) half(w http.ResponseWriter, r *http.Request) error {
	role, err := roleParam(r)
	if err != nil {
		return err
	}
	e, err := a.reg.Get(r.Context(), r.PathValue("id"), r.PathValue("ref"), role)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(DigestHeader, e.Digest)
	h.Set(VersionHeader, e.Version)
	h.Set(RoleHeader, e.Role)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Half)
	return nil
}

func (a *API) version(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var half bool
	switch q.Get("half") {
	case "", "0", "false":
	case "1", "true":
		half = true
	default:
		return web.Errorf(http.StatusBadRequest, "invalid_request", "half must be 1 or 0")
	}
	role, err := roleParam(r)
	if err != nil {
		return err
	}
	if half && !authhttp.PrincipalOf(r.Context()).Has(auth.RoleOperator) {
		return web.Errorf(http.StatusForbidden, "forbidden", "the half document needs role %s", auth.RoleOperator)
	}
	e, err := a.reg.Get(r.Context(), r.PathValue("id"), r.PathValue("ref"), role)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, versionBody(e, half))
	return nil
}

func (a *API) promote(w http.ResponseWriter, r *http.Request) error {
	var req PromoteRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Version == "" {
		return web.Errorf(http.StatusBadRequest, "invalid_request", "version is required")
	}
	if req.Label == "" {
		req.Label = registry.LabelStable
	}
	c, err := a.reg.Promote(r.Context(), r.PathValue("id"), req.Version, req.Label, authhttp.PrincipalOf(r.Context()).Actor())
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, changeBody(c))
	return nil
}

func (a *API) rollback(w http.ResponseWriter, r *http.Request) error {
	var req RollbackRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Label == "" {
		req.Label = registry.LabelStable
	}
	c, err := a.reg.Rollback(r.Context(), r.PathValue("id"), req.Label, authhttp.PrincipalOf(r.Context()).Actor())
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, changeBody(c))
	return nil
}
