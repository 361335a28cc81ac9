package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/console/consolenode"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/serving/servingnode"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/sqltrain"
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

func consoleService(ctx context.Context, d Deps) (Service, error) {
	return consolenode.New(ctx, consolenode.Deps{Config: d.Config, Log: d.Log})
}

func consentService(ctx context.Context, d Deps) (Service, error) {
	return consentnode.New(ctx, consentnode.Deps{Config: d.Config, DB: d.DB, Cache: d.Cache, Log: d.Log})
}

func psiService(ctx context.Context, d Deps) (Service, error) {
	return psinode.New(ctx, psinode.Deps{Config: d.Config, DB: d.DB, Cache: d.Cache, Log: d.Log, Registerer: d.Registerer, PeerClient: d.PeerClient})
}

// servingService is model-serving: the model registry (shared by training,
// which registers the halves it trains, and scoring, which serves them),
// federated training jobs, and scoring with the feature store and the
// privacy budget.
func servingService(ctx context.Context, d Deps) (Service, error) {
	alog := sqlaudit.New(d.DB)
	reg := registry.New(sqlregistry.New(d.DB), d.Cache, registry.Options{Log: d.Log, Auditor: alog})
	train, err := trainjob.New(ctx, trainjob.Deps{Config: d.Config, DB: d.DB, Log: d.Log, PeerClient: d.PeerClient,
		Store: sqltrain.New(d.DB), Models: reg, Registerer: d.Registerer})
	if err != nil {
		return nil, err
	}
	score, err := servingnode.New(ctx, servingnode.Deps{Config: d.Config, DB: d.DB, Cache: d.Cache, Log: d.Log,
		Registerer: d.Registerer, PeerClient: d.PeerClient, Build: d.Build, Models: reg.ForScoring(serving.ErrModelNotFound)})
	if err != nil {
		train.Close()
		return nil, err
	}
	api := registryapi.New(reg, auth.NewTokens(sqlauth.New(d.DB)), registryapi.Options{AuthRequired: d.Config.AuthRequired, Log: d.Log})
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
	return func(ctx context.Context, d Deps) (Service, error) {
		svc, err := f(ctx, d)
		if err != nil {
			return nil, err
		}
		inf, _ := infoService(name, prefix)(ctx, d)
		return composite{inf, svc}, nil
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

// infoService answers GET {prefix}/info. The domain routes of each service
// mount beside it as their packages land.
func infoService(name, prefix string) Factory {
	return func(ctx context.Context, d Deps) (Service, error) {
		return &info{name: name, prefix: prefix, d: d}, nil
	}
}

type info struct {
	name, prefix string
	d            Deps
}

func (s *info) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+s.prefix+"/info", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.d.DB.Version(r.Context())
		if err != nil {
			web.WriteError(w, r, s.d.Log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, Info{
			Service: s.name, Party: s.d.Config.Party, Role: s.d.Config.Role, Build: s.d.Build,
			Release: s.d.Config.Version, SchemaVersion: v, SecurityMode: s.d.Config.SecurityMode,
			AuthRequired: s.d.Config.AuthRequired, AuditLevel: s.d.Config.AuditLevel,
		})
	})
}

func (s *info) Close() error { return nil }
