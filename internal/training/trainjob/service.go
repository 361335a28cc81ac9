package trainjob

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Deps are what the training service needs from its node.
type Deps struct {
	Config config.Config
	DB     *sqldb.DB // bearer tokens and, unless PSI is set, PSI results; nil refuses both
	Log    *slog.Logger
	// PeerClient calls the other parties (mutual TLS when configured).
	PeerClient *http.Client
	// Store keeps jobs and checkpoints (sqltrainjob.New(DB) on a node); nil
	// keeps them in memory: they do not survive a restart.
	Store Store
	// PSI reads this node's PSI results; nil with a DB reads them from the
	// DB (the PSI service's tables and keys).
	PSI PSIResults
	// Models registers the halves of trained models; nil writes the JSON
	// files only.
	Models Registrar
	// Registerer takes the training metrics (nil: a private registry).
	Registerer prometheus.Registerer
}

// Service is the training service of a node: the client job API, the peer
// API, and the job manager. Files are read below the data directory;
// models are written to <data dir>/models.
type Service struct {
	Jobs *Manager
	Peer *Peer
	api  *API
}

// New builds the service and resumes the guest jobs that were running.
func New(ctx context.Context, d Deps) (*Service, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	log := d.Log.With("component", "train")
	if d.PeerClient == nil {
		d.PeerClient = &http.Client{Timeout: 10 * time.Second}
	}
	met, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("training metrics: %w", err)
	}
	if d.PSI == nil && d.DB != nil {
		km, err := consentnode.OpenKeys(ctx, d.Config, d.DB, log)
		if err != nil {
			return nil, err
		}
		// Read-only use: Get, List and Export of finished jobs.
		d.PSI = psijob.NewService(psijob.ServiceDeps{Store: sqlpsi.New(d.DB), Sealer: km}, psijob.Options{Log: log})
	}
	peers := map[string]string{}
	for _, p := range d.Config.Peers {
		peers[p.Name] = p.URLFor(config.ServiceServing)
	}
	allowed := func(party string) bool { _, ok := peers[party]; return ok }
	party := d.Config.Party
	plain := !d.Config.TLS.Enabled()
	dial := func(ctx context.Context, peer string, req OpenRequest) (*Client, OpenAnswer, error) {
		url, ok := peers[peer]
		if !ok || url == "" {
			return nil, OpenAnswer{}, ErrInvalid
		}
		opts := ClientOptions{}
		if plain {
			opts.Party = party // loopback peers name themselves
		}
		return OpenSession(ctx, d.PeerClient, url, opts, req)
	}
	m := NewManager(ManagerOptions{Party: party, InputDir: d.Config.DataDir, ModelDir: filepath.Join(d.Config.DataDir, "models"),
		Dial: dial, Peers: peers, Allowed: allowed, Store: d.Store, PSI: d.PSI, Models: d.Models, Metrics: met, Log: log})
	peer := NewPeer(PeerOptions{Allowed: allowed, PlainPeers: plain && !d.Config.AuthRequired, Accept: m.Accept, Log: log})
	apiOpts := APIOptions{AuthRequired: d.Config.AuthRequired, Log: log}
	if d.DB != nil {
		apiOpts.Tokens = auth.NewTokens(sqlauth.New(d.DB))
	}
	if err := m.Resume(ctx); err != nil {
		return nil, err
	}
	return &Service{Jobs: m, Peer: peer, api: NewAPI(m, apiOpts)}, nil
}

// Mount registers the client and peer routes.
func (s *Service) Mount(mux *http.ServeMux) {
	s.api.Mount(mux)
	s.Peer.Mount(mux)
}

// Drain interrupts the running jobs so long polls end; they resume at the
// next start.
func (s *Service) Drain() { _ = s.Jobs.Close() }

// Close ends the sessions and jobs.
func (s *Service) Close() error {
	_ = s.Peer.Close()
	return s.Jobs.Close()
}
