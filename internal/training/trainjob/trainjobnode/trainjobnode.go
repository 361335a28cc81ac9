// Package trainjobnode assembles the training service of one node: the job
// manager (trainjob) over its store, the node's PSI results and model
// registry, the client API and the peer API (trainjobapi), with sessions to
// peers over the node's peer client. It resumes the guest jobs that were
// running when the node stopped.
package trainjobnode

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

// Deps is what the training service needs from its node.
type Deps struct {
	// Party is this node's party; DataDir holds the job files (read below
	// it) and the exported model halves (DataDir/models).
	Party   string
	DataDir string
	// Peers maps each configured peer to the URL of its training (model
	// serving) service.
	Peers map[string]string
	// PeerAuth identifies the callers of the peer API.
	PeerAuth authhttp.Peers
	// NameSelf makes this node name itself in authhttp.PartyHeader when it
	// calls a peer: a node without TLS has no certificate to do it.
	NameSelf bool
	// Tokens authenticates the client API's bearer tokens (nil refuses
	// them); without AuthRequired loopback callers act as local admin.
	Tokens       authhttp.Authenticator
	AuthRequired bool
	// PeerClient calls the other parties (mutual TLS when configured).
	PeerClient *http.Client
	// Store keeps jobs and checkpoints (sqltrainjob on a node); nil keeps
	// them in memory: they do not survive a restart.
	Store trainjob.Store
	// PSI reads this node's PSI results (nil refuses --psi-job).
	PSI trainjob.PSIResults
	// Models registers the halves of trained models; nil writes the JSON
	// files only.
	Models trainjob.Registrar
	// Registerer takes the training metrics (nil: a private registry).
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Service is the training service of a node: the client job API, the peer
// API, and the job manager.
type Service struct {
	Jobs *trainjob.Manager
	Peer *trainjobapi.Peer
	api  *trainjobapi.API
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
	met, err := trainjob.NewMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("training metrics: %w", err)
	}
	party := d.Party
	plain := d.NameSelf
	dial := func(ctx context.Context, peer string, req trainjob.OpenRequest) (trainjob.Session, trainjob.OpenAnswer, error) {
		url, ok := d.Peers[peer]
		if !ok || url == "" {
			return nil, trainjob.OpenAnswer{}, trainjob.ErrInvalid
		}
		opts := trainjobapi.ClientOptions{}
		if plain {
			opts.Party = party // loopback peers name themselves
		}
		c, ans, err := trainjobapi.OpenSession(ctx, d.PeerClient, url, opts, req)
		if err != nil {
			return nil, ans, err
		}
		return c, ans, nil
	}
	m := trainjob.NewManager(trainjob.ManagerOptions{Party: party, InputDir: d.DataDir, ModelDir: filepath.Join(d.DataDir, "models"),
		Dial: dial, Peers: d.Peers, Allowed: d.PeerAuth.Allowed, Store: d.Store, PSI: d.PSI, Models: d.Models, Metrics: met, Log: log})
	peer := trainjobapi.NewPeer(trainjobapi.PeerOptions{Peers: d.PeerAuth, Accept: m.Accept, Log: log})
	api := trainjobapi.NewAPI(m, trainjobapi.APIOptions{Tokens: d.Tokens, AuthRequired: d.AuthRequired, Log: log})
	if err := m.Resume(ctx); err != nil {
		return nil, err
	}
	return &Service{Jobs: m, Peer: peer, api: api}, nil
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
