package trainjob

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/web"
)

// CreateBody is POST /train/v1/jobs.
type CreateBody struct {
	Role    string `json:"role"` // guest (default) or host
	Peer    string `json:"peer"`
	File    string `json:"file"` // relative to the node's data directory
	ModelID string `json:"model_id,omitempty"`
	Epochs  int    `json:"epochs,omitempty"`
}

// JobBody is a job as the API answers it.
type JobBody struct {
	ID             string      `json:"id"`
	Role           string      `json:"role"`
	Peer           string      `json:"peer"`
	File           string      `json:"file"`
	ModelID        string      `json:"model_id,omitempty"`
	Status         string      `json:"status"`
	Error          string      `json:"error,omitempty"`
	Rows           int         `json:"rows"`
	Features       int         `json:"features"`
	Epochs         int         `json:"epochs,omitempty"`
	EpochsDone     int         `json:"epochs_done"`
	EpochStats     []EpochStat `json:"epoch_stats"`
	Test           *lr.Metrics `json:"test,omitempty"`
	ElapsedSeconds float64     `json:"elapsed_seconds"`
	Created        time.Time   `json:"created"`
	Started        *time.Time  `json:"started,omitempty"`
	Finished       *time.Time  `json:"finished,omitempty"`
	ModelPath      string      `json:"model_path,omitempty"`
	BytesSent      int64       `json:"bytes_sent"`
	BytesReceived  int64       `json:"bytes_received"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// NewJobBody converts a job.
func NewJobBody(j Job, now time.Time) JobBody {
	stats := j.EpochStats
	if stats == nil {
		stats = []EpochStat{}
	}
	return JobBody{ID: j.ID, Role: j.Role, Peer: j.Peer, File: j.File, ModelID: j.ModelID, Status: j.Status, Error: j.Error,
		Rows: j.Rows, Features: j.Features, Epochs: j.Epochs, EpochsDone: len(j.EpochStats), EpochStats: stats, Test: j.Test,
		ElapsedSeconds: j.Elapsed(now).Seconds(), Created: j.Created, Started: timePtr(j.Started), Finished: timePtr(j.Finished),
		ModelPath: j.ModelPath, BytesSent: j.BytesSent, BytesReceived: j.BytesReceived}
}

// API serves the training client API (/train/v1/jobs).
type API struct {
	m     *Manager
	guard authhttp.Guard
}

// APIOptions configure the client API.
type APIOptions struct {
	Tokens       authhttp.Authenticator // bearer tokens; nil refuses them
	AuthRequired bool                   // false: loopback callers act as local admin
	Log          *slog.Logger
}

// NewAPI returns the client API over m.
func NewAPI(m *Manager, opts APIOptions) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &API{m: m, guard: authhttp.Guard{Tokens: opts.Tokens, AuthRequired: opts.AuthRequired, Log: opts.Log, MapError: mapError}}
}

// Mount registers the client routes.
func (a *API) Mount(mux *http.ServeMux) {
	operator := []auth.Role{auth.RoleOperator}
	analyst := []auth.Role{auth.RoleAnalyst}
	mux.HandleFunc("POST /train/v1/jobs", a.guard.With(operator, a.create))
	mux.HandleFunc("GET /train/v1/jobs", a.guard.With(analyst, a.list))
	mux.HandleFunc("GET /train/v1/jobs/{id}", a.guard.With(analyst, a.get))
	mux.HandleFunc("POST /train/v1/jobs/{id}/cancel", a.guard.With(operator, a.cancel))
}

func mapError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, "job_not_found", "no such training job")
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusBadRequest, "invalid_request", "%s", clip(err.Error(), 500))
	}
	return err
}

func (a *API) create(w http.ResponseWriter, r *http.Request) error {
	var b CreateBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	if b.Role == "" {
		b.Role = RoleGuest
	}
	j, err := a.m.Create(r.Context(), Request{Role: b.Role, Peer: b.Peer, File: b.File, ModelID: b.ModelID, Epochs: b.Epochs})
	if err != nil {
		return err
	}
	a.m.opts.Log.InfoContext(r.Context(), "training job created", "job", j.ID, "role", j.Role, "peer", j.Peer,
		"actor", authhttp.PrincipalOf(r.Context()).Actor())
	web.WriteJSON(w, http.StatusAccepted, NewJobBody(j, a.m.opts.Now()))
	return nil
}

func (a *API) get(w http.ResponseWriter, r *http.Request) error {
	j, err := a.m.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, NewJobBody(j, a.m.opts.Now()))
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	now := a.m.opts.Now()
	out := []JobBody{}
	for _, j := range a.m.List(r.Context()) {
		out = append(out, NewJobBody(j, now))
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"jobs": out})
	return nil
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) error {
	j, err := a.m.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, NewJobBody(j, a.m.opts.Now()))
	return nil
}
