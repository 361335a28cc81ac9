package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/console/consolenode"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/serving/servingnode"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/sqltrainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobnode"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Builtin returns the factories of the services built into the binary,
// keyed by the names --services accepts. Adding a service is one line here.
func Builtin() map[string]Factory {
	return map[string]Factory{
		config.ServiceConsent: withInfo("consent-service", "/consent", consentService),
		config.ServicePSI:     withInfo("psi-service", "/psi", psiService),
		config.ServiceServing: withInfo("model-serving", "/score", servingService),
		config.ServiceConsole: consoleService,
	}
}

func consoleService(ctx context.Context, e Env) (Service, error) {
	return consolenode.New(ctx, consolenode.Deps{Config: e.Res.Config, Log: e.Log})
}

func consentService(ctx context.Context, e Env) (Service, error) {
	return consentnode.New(ctx, ConsentDeps(e))
}

func psiService(ctx context.Context, e Env) (Service, error) { return psinode.New(ctx, PSIDeps(e)) }

// ConsentDeps is what the consent service takes from e.
func ConsentDeps(e Env) consentnode.Deps {
	r := e.Res
	return consentnode.Deps{Domain: r.Consent, Keys: r.Keys, Audit: r.Audit, Tokens: r.Tokens, Peers: r.Peers,
		AuthRequired: r.Config.AuthRequired, Revocations: r.Revocations, Log: e.Log}
}

// PSIDeps is what the PSI service takes from e.
func PSIDeps(e Env) psinode.Deps {
	r := e.Res
	d := psinode.Deps{Config: r.Config, DB: r.DB, Cache: r.Cache, Log: e.Log, Registerer: e.Registerer, Keys: r.Keys,
		Audit: r.Audit, Tokens: r.Tokens, Peers: r.Peers, PeerClient: r.PeerClient}
	if r.Config.ConsentServiceURL == "" {
		d.Consent = r.Consent // the consent service's tables are in this database
	}
	return d
}

// TrainingDeps is what the training service takes from e; it registers
// the halves it trains in models.
func TrainingDeps(e Env, models trainjob.Registrar) trainjobnode.Deps {
	r := e.Res
	peers := map[string]string{}
	for _, p := range r.Config.Peers {
		peers[p.Name] = p.URLFor(config.ServiceServing)
	}
	return trainjobnode.Deps{Party: r.Config.Party, DataDir: r.Config.DataDir, Peers: peers,
		PeerAuth: r.Peers, NameSelf: !r.Config.TLS.Enabled(), Tokens: r.Tokens, AuthRequired: r.Config.AuthRequired, PeerClient: r.PeerClient,
		Store: sqltrainjob.New(r.DB), Models: models, Registerer: e.Registerer, Log: e.Log,
		// Read-only use of the PSI results: Get, List and Export of finished jobs.
		PSI: psijob.NewService(psijob.ServiceDeps{Store: sqlpsi.New(r.DB), Sealer: r.Keys}, psijob.Options{Log: e.Log})}
}

// ScoringDeps is what scoring takes from e; it serves the models of
// models.
func ScoringDeps(e Env, models serving.Models) servingnode.Deps {
	r := e.Res
	d := servingnode.Deps{Config: r.Config, DB: r.DB, Cache: r.Cache, Log: e.Log, Registerer: e.Registerer, PeerClient: r.PeerClient,
		Build: e.Build, Models: models, Tokens: r.Tokens, Peers: r.Peers, SubjectRefKey: r.SubjectRefKey, Audit: r.Audit}
	if r.Config.ConsentServiceURL == "" {
		d.Consent = r.Consent
	}
	return d
}

// servingService is model-serving: the model registry (shared by training,
// which registers the halves it trains, and scoring, which serves them),
// federated training jobs, and scoring with the feature store and the
// privacy budget.
func servingService(ctx context.Context, e Env) (Service, error) {
	r := e.Res
	reg := registry.New(sqlregistry.New(r.DB), r.Cache, registry.Options{Log: e.Log, Auditor: r.Audit})
	train, err := trainjobnode.New(ctx, TrainingDeps(e, reg))
	if err != nil {
		return nil, err
	}
	score, err := servingnode.New(ctx, ScoringDeps(e, reg.ForScoring(serving.ErrModelNotFound)))
	if err != nil {
		train.Close()
		return nil, err
	}
	api := registryapi.New(reg, r.Tokens, registryapi.Options{AuthRequired: r.Config.AuthRequired, Log: e.Log})
	return composite{train, score, mounted{api}}, nil
}

// mounted is a set of routes with nothing to close.
type mounted struct {
	m interface{ Mount(*http.ServeMux) }
}

func (m mounted) Mount(mux *http.ServeMux) { m.m.Mount(mux) }
func (m mounted) Close() error             { return nil }

// withInfo mounts the info route beside a service's own routes.
func withInfo(name, prefix string, f Factory) Factory {
	return func(ctx context.Context, e Env) (Service, error) {
		svc, err := f(ctx, e)
		if err != nil {
			return nil, err
		}
		return composite{&info{name: name, prefix: prefix, e: e}, svc}, nil
	}
}

// composite runs several services on one listener.
type composite []Service

func (c composite) Mount(mux *http.ServeMux) {
	for _, s := range c {
		s.Mount(mux)
	}
}

func (c composite) Drain() {
	for _, s := range c {
		if d, ok := s.(Drainer); ok {
			d.Drain()
		}
	}
}

func (c composite) Close() error {
	var errs []error
	for _, s := range c {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Info is the document GET {prefix}/info answers: which service, party and
// build is behind an address, and the schema version it runs on.
type Info struct {
	Service       string `json:"service"`
	Party         string `json:"party"`
	Role          string `json:"role"`
	Build         string `json:"build"`
	Release       string `json:"release"` // VERSION: stable or canary
	SchemaVersion int    `json:"schema_version"`
	SecurityMode  string `json:"security_mode"`
	AuthRequired  bool   `json:"auth_required"`
	AuditLevel    string `json:"audit_level"`
}

// info answers GET {prefix}/info.
type info struct {
	name, prefix string
	e            Env
}

func (s *info) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+s.prefix+"/info", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.e.Res.DB.Version(r.Context())
		if err != nil {
			web.WriteError(w, r, s.e.Log, err)
			return
		}
		cfg := s.e.Res.Config
		web.WriteJSON(w, http.StatusOK, Info{
			Service: s.name, Party: cfg.Party, Role: cfg.Role, Build: s.e.Build,
			Release: cfg.Version, SchemaVersion: v, SecurityMode: cfg.SecurityMode,
			AuthRequired: cfg.AuthRequired, AuditLevel: cfg.AuditLevel,
		})
	})
}

func (s *info) Close() error { return nil }
