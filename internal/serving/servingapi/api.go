// Package servingapi is the HTTP transport of federated scoring.
//
// Its routes:
//
//	guest client API (role operator; loopback callers while AUTH_REQUIRED is false)
//	  POST /score                 score one subject (also POST /score/v1/score)
//	  POST /score/v1/batch        score up to 1000 subjects, per-item results
//	host peer API (a registered peer's mutual-TLS certificate; loopback
//	with X-Fedrisk-Party only on a node without TLS and AUTH_REQUIRED)
//	  POST /score/v1/partial        one partial score
//	  POST /score/v1/partial/batch  partial scores of many subjects
//	host budget admin API
//	  GET  /score/v1/budgets                      (analyst) paged budgets
//	  GET  /score/v1/budgets/policies             (analyst)
//	  PUT  /score/v1/budgets/policies/{purpose}   (admin)
//
// Subject identifiers, tokens and hrefs travel only in bodies, never in
// paths or query strings, and are never logged. Client (the guest's
// serving.HostCaller) calls the peer API.
package servingapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Guest is the guest's scoring (*serving.Guest).
type Guest interface {
	ScoreBatch(ctx context.Context, r serving.Request) ([]serving.Result, error)
}

// Host is the host's partial scoring (*serving.Host).
type Host interface {
	Partial(ctx context.Context, party string, b serving.PartialBatch) ([]serving.PartialAnswer, error)
}

// Budgets is the part of the privacy ledger the admin API uses.
type Budgets interface {
	List(ctx context.Context, f privacy.Filter) (privacy.Page, error)
	Policies(ctx context.Context) (map[string]privacy.Policy, error)
	SetPolicy(ctx context.Context, purpose string, p privacy.Policy, actor string) error
}

// Options configure the API.
type Options struct {
	Guest   Guest   // nil: no client scoring routes
	Host    Host    // nil: no peer routes
	Budgets Budgets // nil: no budget routes
	Tokens  authhttp.Authenticator
	// AuthRequired is AUTH_REQUIRED.
	AuthRequired bool
	// Peers identifies the calling party on the peer routes.
	Peers authhttp.Peers
	// Purpose is the default purpose of peer requests that name none.
	Purpose string
	// Changed, if set, is called after a budget policy changed.
	Changed func()
	Log     *slog.Logger
}

// API serves the scoring endpoints.
type API struct {
	o     Options
	guard authhttp.Guard
}

// New returns the API.
func New(o Options) *API {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Purpose == "" {
		o.Purpose = serving.DefaultPurpose
	}
	o.Peers.API = "the scoring peer API"
	return &API{o: o, guard: authhttp.Guard{Tokens: o.Tokens, AuthRequired: o.AuthRequired, Log: o.Log, MapError: mapError}}
}

// Mount adds the routes.
func (a *API) Mount(mux *http.ServeMux) {
	operator := []auth.Role{auth.RoleOperator}
	analyst := []auth.Role{auth.RoleAnalyst}
	admin := []auth.Role{auth.RoleAdmin}
	if a.o.Guest != nil {
		mux.HandleFunc("POST /score", a.guard.With(operator, a.score))
		mux.HandleFunc("POST /score/v1/score", a.guard.With(operator, a.score))
		mux.HandleFunc("POST /score/v1/batch", a.guard.With(operator, a.batch))
	}
	if a.o.Host != nil {
		mux.HandleFunc("POST /score/v1/partial", a.peer(a.partial))
		mux.HandleFunc("POST /score/v1/partial/batch", a.peer(a.partialBatch))
	}
	if a.o.Budgets != nil {
		mux.HandleFunc("GET /score/v1/budgets", a.guard.With(analyst, a.listBudgets))
		mux.HandleFunc("GET /score/v1/budgets/policies", a.guard.With(analyst, a.listPolicies))
		mux.HandleFunc("PUT /score/v1/budgets/policies/{purpose}", a.guard.With(admin, a.setPolicy))
	}
}

// DecodeScore reads and checks a POST /score body.
func DecodeScore(r *http.Request) (ScoreBody, error) {
	var b ScoreBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return b, err
	}
	return b, checkRef(b.Version, b.Label)
}

func checkRef(version, label string) error {
	if label != "" && label != "stable" && label != "canary" {
		return web.Errorf(http.StatusBadRequest, "invalid_field", "label must be stable or canary")
	}
	if label != "" && version != "" && version != label {
		return web.Errorf(http.StatusBadRequest, "invalid_field", "give version or label, not both")
	}
	return nil
}

func ref(version, label string) string {
	if label != "" {
		return label
	}
	return version
}

func subject(s string, token string, tokens []string, id string, ids []string, f map[string]float64) serving.Subject {
	out := serving.Subject{ID: s, Features: f}
	if token != "" {
		out.ConsentTokens = append(out.ConsentTokens, token)
	}
	out.ConsentTokens = append(out.ConsentTokens, tokens...)
	if id != "" {
		out.ConsentIDs = append(out.ConsentIDs, id)
	}
	out.ConsentIDs = append(out.ConsentIDs, ids...)
	return out
}

func (a *API) score(w http.ResponseWriter, r *http.Request) error {
	b, err := DecodeScore(r)
	if err != nil {
		return err
	}
	res, err := a.o.Guest.ScoreBatch(r.Context(), serving.Request{Model: b.Model, Ref: ref(b.Version, b.Label), Purpose: b.Purpose,
		Items: []serving.Subject{subject(b.Subject, b.ConsentToken, b.ConsentTokens, b.ConsentID, b.ConsentIDs, b.Features)}})
	if err != nil {
		return err
	}
	if res[0].Err != nil {
		return res[0].Err
	}
	web.WriteJSON(w, http.StatusOK, ScoreAnswer{RequestID: web.RequestID(r.Context()), Score: *res[0].Score})
	return nil
}

// DecodeBatch reads and checks a POST /score/v1/batch body.
func DecodeBatch(r *http.Request) (BatchBody, error) {
	var b BatchBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return b, err
	}
	if len(b.Items) == 0 || len(b.Items) > serving.MaxBatch {
		return b, web.Errorf(http.StatusBadRequest, "invalid_batch", "items must hold 1 to %d subjects", serving.MaxBatch)
	}
	return b, checkRef(b.Version, b.Label)
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) error {
	b, err := DecodeBatch(r)
	if err != nil {
		return err
	}
	req := serving.Request{Model: b.Model, Ref: ref(b.Version, b.Label), Purpose: b.Purpose, Items: make([]serving.Subject, len(b.Items))}
	for i, it := range b.Items {
		req.Items[i] = subject(it.Subject, it.ConsentToken, it.ConsentTokens, it.ConsentID, it.ConsentIDs, it.Features)
	}
	res, err := a.o.Guest.ScoreBatch(r.Context(), req)
	if err != nil {
		return err
	}
	out := BatchAnswer{RequestID: web.RequestID(r.Context()), Results: make([]BatchResult, len(res))}
	for i, x := range res {
		if x.Err != nil {
			out.Failed++
			we := toWeb(x.Err)
			out.Results[i] = BatchResult{Error: &ErrorDetail{Code: we.Code, Message: we.Message}}
			continue
		}
		out.Scored++
		out.Results[i] = BatchResult{Score: x.Score}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// peer admits registered peers only.
func (a *API) peer(h func(http.ResponseWriter, *http.Request, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		party, err := a.o.Peers.Party(r)
		if err == nil {
			err = h(w, r, party)
		}
		if err != nil {
			web.WriteError(w, r, a.o.Log, mapError(err))
		}
	}
}

// DecodePartial reads and checks a POST /score/v1/partial body.
func DecodePartial(r *http.Request) (PartialBody, error) {
	var b PartialBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return b, err
	}
	if b.Token == "" || b.Href == "" || b.Model == "" || b.Version == "" {
		return b, web.Errorf(http.StatusBadRequest, "missing_field", "token, href, model and version are required")
	}
	return b, nil
}

func (a *API) partial(w http.ResponseWriter, r *http.Request, party string) error {
	b, err := DecodePartial(r)
	if err != nil {
		return err
	}
	purpose := b.Purpose
	if purpose == "" {
		purpose = a.o.Purpose
	}
	res, err := a.o.Host.Partial(r.Context(), party, serving.PartialBatch{Model: b.Model, Version: b.Version, Purpose: purpose,
		Items: []serving.PartialItem{{Token: b.Token, HostRef: b.Href}}})
	if err != nil {
		return err
	}
	ans := res[0]
	if f := ans.Failure; f != nil {
		switch {
		case f.Code == serving.CodeBudgetExhausted && ans.Refused:
			return web.Errorf(http.StatusTooManyRequests, f.Code, "%s", f.Message)
		case f.Code == serving.CodeBudgetExhausted:
			web.WriteJSON(w, http.StatusOK, PartialResult{Withheld: true, Error: &ErrorDetail{Code: f.Code, Message: f.Message}})
			return nil
		case f.Code == serving.CodeConsentRejected:
			return web.Errorf(http.StatusForbidden, f.Code, "%s", f.Message)
		case ans.Refused:
			return web.Errorf(http.StatusBadRequest, f.Code, "%s", f.Message)
		default:
			return web.Errorf(http.StatusServiceUnavailable, f.Code, "%s", f.Message)
		}
	}
	v := ans.Value
	web.WriteJSON(w, http.StatusOK, PartialResult{Value: &v, Cached: ans.Cached})
	return nil
}

// DecodePartialBatch reads and checks a POST /score/v1/partial/batch body.
func DecodePartialBatch(r *http.Request) (PartialBatchBody, error) {
	var b PartialBatchBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return b, err
	}
	if b.Model == "" || b.Version == "" {
		return b, web.Errorf(http.StatusBadRequest, "missing_field", "model and version are required")
	}
	if len(b.Items) == 0 || len(b.Items) > serving.MaxBatch {
		return b, web.Errorf(http.StatusBadRequest, "invalid_batch", "items must hold 1 to %d entries", serving.MaxBatch)
	}
	return b, nil
}

func (a *API) partialBatch(w http.ResponseWriter, r *http.Request, party string) error {
	b, err := DecodePartialBatch(r)
	if err != nil {
		return err
	}
	purpose := b.Purpose
	if purpose == "" {
		purpose = a.o.Purpose
	}
	items := make([]serving.PartialItem, len(b.Items))
	for i, it := range b.Items {
		items[i] = serving.PartialItem{Token: it.Token, HostRef: it.Href}
	}
	res, err := a.o.Host.Partial(r.Context(), party, serving.PartialBatch{Model: b.Model, Version: b.Version, Purpose: purpose, Items: items})
	if err != nil {
		return err
	}
	out := PartialBatchAnswer{Results: make([]PartialResult, len(res))}
	for i, ans := range res {
		if f := ans.Failure; f != nil {
			out.Results[i] = PartialResult{Refused: ans.Refused, Withheld: f.Code == serving.CodeBudgetExhausted && !ans.Refused,
				Error: &ErrorDetail{Code: f.Code, Message: f.Message}}
			continue
		}
		v := ans.Value
		out.Results[i] = PartialResult{Value: &v, Cached: ans.Cached}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listBudgets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := privacy.Filter{Party: q.Get("party"), Purpose: q.Get("purpose"), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > privacy.MaxLimit {
			return web.Errorf(http.StatusBadRequest, "invalid_limit", "limit must be 1 to %d", privacy.MaxLimit)
		}
		f.Limit = n
	}
	page, err := a.o.Budgets.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := BudgetsAnswer{Budgets: make([]BudgetBody, len(page.Balances)), Next: page.Next}
	for i, b := range page.Balances {
		out.Budgets[i] = BudgetBody{Party: b.Key.Party, Subject: b.Key.Subject, Purpose: b.Key.Purpose,
			WindowStart: b.Window.Start.UTC().Format(time.RFC3339), WindowEnd: b.Window.End.UTC().Format(time.RFC3339),
			SpentEpsilon: b.Spent.Epsilon(), RemainingEpsilon: b.Remaining.Epsilon(), TotalEpsilon: b.Total.Epsilon(),
			RemainingFraction: b.Fraction()}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.o.Budgets.Policies(r.Context())
	if err != nil {
		return err
	}
	out := PoliciesAnswer{Policies: []PolicyBody{}}
	for _, purpose := range sortedKeys(ps) {
		out.Policies = append(out.Policies, policyBody(purpose, ps[purpose]))
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func policyBody(purpose string, p privacy.Policy) PolicyBody {
	p = p.Normalized()
	return PolicyBody{Purpose: purpose, Window: p.Window.String(), TotalEpsilon: p.Total.Epsilon(), OnExhausted: string(p.OnExhausted)}
}

// DecodePolicy reads and checks a PUT policy body.
func DecodePolicy(r *http.Request) (privacy.Policy, error) {
	var b PolicyBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return privacy.Policy{}, err
	}
	if b.Purpose != "" {
		return privacy.Policy{}, web.Errorf(http.StatusBadRequest, "invalid_field", "the purpose is in the path")
	}
	d, err := time.ParseDuration(b.Window)
	if err != nil {
		return privacy.Policy{}, web.Errorf(http.StatusBadRequest, "invalid_field", "window must be a duration such as 24h")
	}
	if math.IsNaN(b.TotalEpsilon) || b.TotalEpsilon < 0 {
		return privacy.Policy{}, web.Errorf(http.StatusBadRequest, "invalid_field", "total_epsilon must be a number ≥ 0")
	}
	total, err := privacy.EpsilonAmount(b.TotalEpsilon)
	if err != nil {
		return privacy.Policy{}, web.Errorf(http.StatusBadRequest, "invalid_field", "total_epsilon is out of range")
	}
	p := privacy.Policy{Window: d, Total: total, OnExhausted: privacy.ExhaustionPolicy(b.OnExhausted)}.Normalized()
	if err := p.Validate(); err != nil {
		return privacy.Policy{}, web.Errorf(http.StatusBadRequest, "invalid_policy", "%v", err)
	}
	return p, nil
}

func (a *API) setPolicy(w http.ResponseWriter, r *http.Request) error {
	purpose := r.PathValue("purpose")
	if len(purpose) == 0 || len(purpose) > 64 || !validPurpose(purpose) {
		return web.Errorf(http.StatusBadRequest, "invalid_purpose", "purpose must be 1 to 64 characters of [a-z0-9_.-]")
	}
	p, err := DecodePolicy(r)
	if err != nil {
		return err
	}
	actor := authhttp.PrincipalOf(r.Context()).Actor()
	if err := a.o.Budgets.SetPolicy(r.Context(), purpose, p, actor); err != nil {
		return err
	}
	a.o.Log.InfoContext(r.Context(), "privacy budget policy set", "purpose", purpose, "window", p.Window.String(),
		"total", p.Total.String(), "on_exhausted", string(p.OnExhausted), "actor", actor)
	if a.o.Changed != nil {
		a.o.Changed()
	}
	web.WriteJSON(w, http.StatusOK, policyBody(purpose, p))
	return nil
}

func validPurpose(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// toWeb maps a domain error to a *web.Error.
func toWeb(err error) *web.Error {
	var we *web.Error
	if errors.As(mapError(err), &we) {
		return we
	}
	return &web.Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

// mapError turns domain errors into HTTP errors with client-safe messages.
func mapError(err error) error {
	var (
		we *web.Error
		se *serving.Error
	)
	switch {
	case errors.As(err, &we):
		return we
	case errors.As(err, &se):
		status := http.StatusInternalServerError
		switch {
		case errors.Is(se.Kind, serving.ErrInvalid):
			status = http.StatusBadRequest
		case errors.Is(se.Kind, serving.ErrConsent), errors.Is(se.Kind, serving.ErrForbidden):
			status = http.StatusForbidden
		case errors.Is(se.Kind, serving.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(se.Kind, serving.ErrBudget):
			status = http.StatusTooManyRequests
		case errors.Is(se.Kind, serving.ErrUnavailable):
			status = http.StatusServiceUnavailable
		}
		return &web.Error{Status: status, Code: se.Code, Message: se.Message, Cause: err}
	case errors.Is(err, privacy.ErrInvalid):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid", Message: "invalid argument", Cause: err}
	}
	return err
}
