// Package featuresapi is the HTTP transport of the online feature store, in
// the shape of Feast's feature server so that Feast clients and habits carry
// over.
//
// Its routes:
//
//	POST {prefix}/get-online-features   {"features": ["view:feature", ...],
//	                                     "entities": {"id": [25115, "2346"]},
//	                                     "full_feature_names": false}
//	→ {"metadata": {"feature_names": ["id", "x0", ...]},
//	   "results": [{"values": [...], "statuses": [...], "event_timestamps": [...]}, ...]}
//	GET  {prefix}/feature-views         the view definitions
//
// Results are columns: the entity key columns first (echoed, status
// PRESENT), then one per requested feature. A feature without a fresh
// value carries the view's documented default with status NOT_FOUND or
// OUTSIDE_MAX_AGE. Bad input — malformed references, unknown views or
// features, unknown fields, missing or unused entity keys, more than
// Options.MaxEntities rows — is a 4xx JSON error that reads nothing.
//
// Entity keys travel only in bodies (never in paths or query strings that
// access logs keep) and are never logged or repeated in errors. Callers
// need a bearer token with the operator role (or admin), or, while
// AUTH_REQUIRED is false, must call from the loopback interface; listing
// view definitions needs the analyst role.
package featuresapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Reader is the store as the API uses it (*features.Store).
type Reader interface {
	Views() *features.Registry
	GetBatch(ctx context.Context, view string, entities []string, features []string) ([]features.Vector, error)
}

// Authenticator resolves bearer tokens (*auth.Tokens).
type Authenticator = authhttp.Authenticator

// Options configure the API. Zero values select the defaults.
type Options struct {
	// Prefix is put before the routes, e.g. "/score/features"; "" mounts
	// them at the root like Feast's server.
	Prefix       string
	AuthRequired bool
	// MaxEntities bounds the entity rows of a request (default 1000).
	MaxEntities int
	// MaxFeatures bounds the feature references of a request (default 500).
	MaxFeatures int
	Log         *slog.Logger
}

// API serves the feature store endpoints.
type API struct {
	r     Reader
	guard authhttp.Guard
	opts  Options
}

// New returns the API. authn may be nil when no bearer tokens exist (then
// only loopback callers with AUTH_REQUIRED=false get in).
func New(r Reader, authn Authenticator, opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxEntities <= 0 {
		opts.MaxEntities = 1000
	}
	if opts.MaxFeatures <= 0 {
		opts.MaxFeatures = 500
	}
	opts.Prefix = strings.TrimSuffix(opts.Prefix, "/")
	return &API{r: r, guard: authhttp.Guard{Tokens: authn, AuthRequired: opts.AuthRequired, Log: opts.Log, MapError: mapError}, opts: opts}
}

// Mount adds the routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST "+a.opts.Prefix+"/get-online-features", a.guard.With([]auth.Role{auth.RoleOperator}, a.getOnlineFeatures))
	mux.HandleFunc("GET "+a.opts.Prefix+"/feature-views", a.guard.With([]auth.Role{auth.RoleAnalyst}, a.listViews))
}

func (a *API) listViews(w http.ResponseWriter, r *http.Request) error {
	out := ViewsResponse{Views: []ViewBody{}}
	for _, v := range a.r.Views().Views() {
		out.Views = append(out.Views, viewBody(v))
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getOnlineFeatures(w http.ResponseWriter, r *http.Request) error {
	var req Request
	if err := web.DecodeJSON(r, &req); err != nil {
		return err
	}
	p, err := a.plan(req)
	if err != nil {
		return err
	}
	resp := Response{Metadata: Metadata{FeatureNames: make([]string, 0, len(req.Entities)+len(p.refs))}}
	for _, col := range req.Entities {
		res := Result{Values: col.raw, Statuses: make([]string, p.rows), EventTimestamps: make([]string, p.rows)}
		for i := range p.rows {
			res.Statuses[i], res.EventTimestamps[i] = features.StatusPresent.String(), epoch
		}
		resp.Metadata.FeatureNames = append(resp.Metadata.FeatureNames, col.Name)
		resp.Results = append(resp.Results, res)
	}
	cols := make([]Result, len(p.refs))
	for _, g := range p.views {
		vecs, err := a.r.GetBatch(r.Context(), g.view, g.keys, g.features)
		if err != nil {
			return err
		}
		for j, at := range g.columns {
			res := Result{Values: make([]any, p.rows), Statuses: make([]string, p.rows), EventTimestamps: make([]string, p.rows)}
			for i, vec := range vecs {
				res.Values[i], res.Statuses[i], res.EventTimestamps[i] = vec.Values[j], vec.Statuses[j].String(), timestamp(vec.EventTimes[j])
			}
			cols[at] = res
		}
	}
	for i, ref := range p.refs {
		name := ref.Feature
		if req.FullFeatureNames {
			name = ref.View + "__" + ref.Feature
		}
		resp.Metadata.FeatureNames = append(resp.Metadata.FeatureNames, name)
		resp.Results = append(resp.Results, cols[i])
	}
	web.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// plan is a validated request: the reads to make, one per view.
type plan struct {
	rows  int
	refs  []features.Ref
	views []viewRead
}

type viewRead struct {
	view     string
	keys     []string // the view's entity column
	features []string
	columns  []int // position in refs of each feature
}

// plan checks a request against the limits and the view definitions.
// Every error is a 4xx *web.Error.
func (a *API) plan(req Request) (plan, error) {
	bad := func(code, format string, args ...any) (plan, error) {
		return plan{}, web.Errorf(http.StatusBadRequest, code, format, args...)
	}
	switch {
	case len(req.Features) == 0:
		return bad("missing_features", "features must list at least one view:feature reference")
	case len(req.Features) > a.opts.MaxFeatures:
		return bad("too_many_features", "at most %d feature references per request", a.opts.MaxFeatures)
	case len(req.Entities) == 0:
		return bad("missing_entities", "entities must map the views' entity key names to lists of keys")
	}
	p := plan{rows: len(req.Entities[0].Keys)}
	if p.rows == 0 {
		return bad("missing_entities", "entities must hold at least one key")
	}
	if p.rows > a.opts.MaxEntities {
		return bad("too_many_entities", "at most %d entities per request, got %d", a.opts.MaxEntities, p.rows)
	}
	byName := make(map[string]*EntityColumn, len(req.Entities))
	for i := range req.Entities {
		col := &req.Entities[i]
		if len(col.Keys) != p.rows {
			return bad("invalid_entities", "every entity key list must have the same length (%s has %d, %s has %d)",
				quote(req.Entities[0].Name), p.rows, quote(col.Name), len(col.Keys))
		}
		for j, k := range col.Keys {
			if err := features.ValidateEntity(k); err != nil {
				return plan{}, &web.Error{Status: http.StatusBadRequest, Code: "invalid_entity",
					Message: fmt.Sprintf("entities[%s][%d]: %v", quote(col.Name), j, err), Cause: err}
			}
		}
		byName[col.Name] = col
	}
	views := a.r.Views()
	used := map[string]bool{}
	seenRef := map[features.Ref]bool{}
	seenName := map[string]string{}
	group := map[string]int{}
	for i, s := range req.Features {
		ref, err := features.ParseRef(s)
		if err != nil {
			return bad("invalid_reference", "features[%d] %s: %v", i, quote(s), err)
		}
		v, ok := views.View(ref.View)
		if !ok {
			return plan{}, web.Errorf(http.StatusUnprocessableEntity, "unknown_view", "features[%d]: unknown feature view %q", i, ref.View)
		}
		if _, _, ok := v.Feature(ref.Feature); !ok {
			return plan{}, web.Errorf(http.StatusUnprocessableEntity, "unknown_feature", "features[%d]: view %q has no feature %q", i, ref.View, ref.Feature)
		}
		if seenRef[ref] {
			return bad("duplicate_feature", "features[%d]: %s is requested twice", i, ref)
		}
		seenRef[ref] = true
		if other, clash := seenName[ref.Feature]; clash && !req.FullFeatureNames {
			return bad("ambiguous_feature_name", "feature name %q is in views %q and %q: set full_feature_names to name columns view__feature", ref.Feature, other, ref.View)
		}
		seenName[ref.Feature] = ref.View
		if _, clash := byName[ref.Feature]; clash && !req.FullFeatureNames {
			return bad("ambiguous_feature_name", "feature name %q is also an entity key name: set full_feature_names", ref.Feature)
		}
		g, ok := group[ref.View]
		if !ok {
			col, has := byName[v.Entity]
			if !has {
				return bad("missing_entity_key", "view %q needs the entity key %q in entities", v.Name, v.Entity)
			}
			used[v.Entity] = true
			g = len(p.views)
			group[ref.View] = g
			p.views = append(p.views, viewRead{view: v.Name, keys: col.Keys})
		}
		p.views[g].features = append(p.views[g].features, ref.Feature)
		p.views[g].columns = append(p.views[g].columns, i)
		p.refs = append(p.refs, ref)
	}
	for _, col := range req.Entities {
		if !used[col.Name] {
			return bad("unused_entity_key", "entity key %s is not the entity of any requested view", quote(col.Name))
		}
	}
	return p, nil
}
