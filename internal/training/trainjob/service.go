package trainjob

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Deps are what the training service needs from its node.
type Deps struct {
	Config config.Config
	DB     *sqldb.DB // bearer tokens; nil refuses them
	Log    *slog.Logger
	// PeerClient calls the other parties (mutual TLS when configured).
	PeerClient *http.Client
}

// Service is the training service of a node: the client job API, the peer
// API, and the in-memory job manager. Files are read below the data
// directory; models are written to <data dir>/models.
type Service struct {
	Jobs *Manager
	Peer *Peer
	api  *API
}

// New builds the service.
func New(_ context.Context, d Deps) (*Service, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	log := d.Log.With("service", "train")
	if d.PeerClient == nil {
		d.PeerClient = &http.Client{Timeout: 10 * time.Second}
	}
	peers := map[string]string{}
	for _, p := range d.Config.Peers {
		peers[p.Name] = p.URL
	}
	allowed := func(party string) bool { _, ok := peers[party]; return ok }
	party := d.Config.Party
	plain := !d.Config.TLS.Enabled()
	dial := func(ctx context.Context, peer string) (*Client, error) {
		url, ok := peers[peer]
		if !ok || url == "" {
			return nil, ErrInvalid
		}
		opts := ClientOptions{}
		if plain {
			opts.Party = party // loopback peers name themselves
		}
		return Open(ctx, d.PeerClient, url, opts)
	}
	m := NewManager(ManagerOptions{Party: party, InputDir: d.Config.DataDir, ModelDir: filepath.Join(d.Config.DataDir, "models"),
		Dial: dial, Allowed: allowed, Log: log})
	peer := NewPeer(PeerOptions{Allowed: allowed, PlainPeers: plain && !d.Config.AuthRequired, Accept: m.Accept, Log: log})
	var tokens *auth.Tokens
	apiOpts := APIOptions{AuthRequired: d.Config.AuthRequired, Log: log}
	if d.DB != nil {
		tokens = auth.NewTokens(sqlauth.New(d.DB))
		apiOpts.Tokens = tokens
	}
	return &Service{Jobs: m, Peer: peer, api: NewAPI(m, apiOpts)}, nil
}

// Mount registers the client and peer routes.
func (s *Service) Mount(mux *http.ServeMux) {
	s.api.Mount(mux)
	s.Peer.Mount(mux)
}

// Drain cancels the running jobs so long polls end.
func (s *Service) Drain() { _ = s.Jobs.Close() }

// Close ends the sessions and jobs.
func (s *Service) Close() error {
	_ = s.Peer.Close()
	return s.Jobs.Close()
}
