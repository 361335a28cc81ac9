package trainjobapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// CreateBody is POST /train/v1/jobs.
type CreateBody struct {
	Role    string `json:"role,omitempty"` // guest (default) or host
	Algo    string `json:"algo,omitempty"` // hetero-lr (default; the only one)
	Peer    string `json:"peer"`           // name, or URL of a configured peer
	File    string `json:"file"`           // relative to the node's data directory
	PSIJob  string `json:"psi_job,omitempty"`
	ModelID string `json:"model_id,omitempty"`
	// HostFile is the host's file, relative to the host's data directory,
	// when the guest's session creates the host's job (guest only).
	HostFile     string   `json:"host_file,omitempty"`
	Epochs       int      `json:"epochs,omitempty"`
	BatchSize    int      `json:"batch_size,omitempty"`
	LearningRate float64  `json:"learning_rate,omitempty"`
	L2           *float64 `json:"l2,omitempty"`
	Patience     *int     `json:"patience,omitempty"`
	ClassWeights string   `json:"class_weights,omitempty"` // balanced or none
}

// JobBody is a job as the API answers it.
type JobBody struct {
	ID             string               `json:"id"`
	Role           string               `json:"role"`
	Algo           string               `json:"algo"`
	Peer           string               `json:"peer"`
	PeerJob        string               `json:"peer_job,omitempty"`
	File           string               `json:"file"`
	PSIJob         string               `json:"psi_job,omitempty"`
	ModelID        string               `json:"model_id,omitempty"`
	ModelVersion   string               `json:"model_version,omitempty"`
	Params         *lr.Config           `json:"params,omitempty"`
	Status         string               `json:"status"`
	Error          string               `json:"error,omitempty"`
	Rows           int                  `json:"rows"`
	Features       int                  `json:"features"`
	Epochs         int                  `json:"epochs,omitempty"`
	EpochsDone     int                  `json:"epochs_done"`
	EpochStats     []trainjob.EpochStat `json:"epoch_stats"`
	Test           *lr.Metrics          `json:"test,omitempty"`
	ElapsedSeconds float64              `json:"elapsed_seconds"`
	Created        time.Time            `json:"created"`
	Started        *time.Time           `json:"started,omitempty"`
	Finished       *time.Time           `json:"finished,omitempty"`
	ModelPath      string               `json:"model_path,omitempty"`
	BytesSent      int64                `json:"bytes_sent"`
	BytesReceived  int64                `json:"bytes_received"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// NewJobBody converts a job.
func NewJobBody(j trainjob.Job, now time.Time) JobBody {
	stats := j.EpochStats
	if stats == nil {
		stats = []trainjob.EpochStat{}
	}
	var params *lr.Config
	if j.Train != (lr.Config{}) {
		p := j.Train
		params = &p
	}
	return JobBody{ID: j.ID, Role: j.Role, Algo: j.Algo, Peer: j.Peer, PeerJob: j.PeerJob, File: j.File, PSIJob: j.PSIJob,
		ModelID: j.ModelID, ModelVersion: j.Version, Params: params, Status: j.Status, Error: j.Error,
		Rows: j.Rows, Features: j.Features, Epochs: j.Epochs, EpochsDone: len(j.EpochStats), EpochStats: stats, Test: j.Test,
		ElapsedSeconds: j.Elapsed(now).Seconds(), Created: j.Created, Started: timePtr(j.Started), Finished: timePtr(j.Finished),
		ModelPath: j.ModelPath, BytesSent: j.BytesSent, BytesReceived: j.BytesReceived}
}

// API serves the training client API (/train/v1/jobs).
type API struct {
	m     *trainjob.Manager
	guard authhttp.Guard
	log   *slog.Logger
}

// APIOptions configure the client API.
type APIOptions struct {
	Tokens       authhttp.Authenticator // bearer tokens; nil refuses them
	AuthRequired bool                   // false: loopback callers act as local admin
	Log          *slog.Logger
}

// NewAPI returns the client API over m.
func NewAPI(m *trainjob.Manager, opts APIOptions) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &API{m: m, log: opts.Log, guard: authhttp.Guard{Tokens: opts.Tokens, AuthRequired: opts.AuthRequired, Log: opts.Log, MapError: mapError}}
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
	case errors.Is(err, trainjob.ErrNotFound):
		return web.Errorf(http.StatusNotFound, "job_not_found", "no such training job")
	case errors.Is(err, trainjob.ErrInvalid):
		return web.Errorf(http.StatusBadRequest, "invalid_request", "%s", web.Clip(strings.TrimPrefix(err.Error(), trainjob.ErrInvalid.Error()+": "), 500))
	case errors.Is(err, trainjob.ErrFinal):
		return web.Errorf(http.StatusConflict, "job_final", "%s", web.Clip(err.Error(), 200))
	}
	return err
}

func (a *API) create(w http.ResponseWriter, r *http.Request) error {
	var b CreateBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	if b.Role == "" {
		b.Role = trainjob.RoleGuest
	}
	j, err := a.m.Create(r.Context(), trainjob.Request{Role: b.Role, Algo: b.Algo, Peer: b.Peer, File: b.File, PSIJob: b.PSIJob,
		ModelID: b.ModelID, HostFile: b.HostFile, Epochs: b.Epochs, BatchSize: b.BatchSize, LearningRate: b.LearningRate,
		L2: b.L2, Patience: b.Patience, ClassWeights: b.ClassWeights, Actor: authhttp.PrincipalOf(r.Context()).Actor()})
	if err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "training job created", "job", j.ID, "role", j.Role, "peer", j.Peer,
		"actor", authhttp.PrincipalOf(r.Context()).Actor())
	web.WriteJSON(w, http.StatusAccepted, NewJobBody(j, a.m.Now()))
	return nil
}

func (a *API) get(w http.ResponseWriter, r *http.Request) error {
	j, err := a.m.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, NewJobBody(j, a.m.Now()))
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := trainjob.Filter{Role: q.Get("role")}
	if f.Role != "" && f.Role != trainjob.RoleGuest && f.Role != trainjob.RoleHost {
		return web.Errorf(http.StatusBadRequest, "invalid_request", "role must be guest or host")
	}
	if s := q.Get("status"); s != "" {
		for _, v := range strings.Split(s, ",") {
			switch v {
			case trainjob.StatusWaiting, trainjob.StatusRunning, trainjob.StatusSucceeded, trainjob.StatusFailed, trainjob.StatusCancelled:
				f.Status = append(f.Status, v)
			default:
				return web.Errorf(http.StatusBadRequest, "invalid_request", "status must be waiting, running, succeeded, failed or cancelled")
			}
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return web.Errorf(http.StatusBadRequest, "invalid_request", "limit must be 1..1000")
		}
		f.Limit = n
	}
	jobs, err := a.m.List(r.Context(), f)
	if err != nil {
		return err
	}
	now := a.m.Now()
	out := []JobBody{}
	for _, j := range jobs {
		out = append(out, NewJobBody(j, now))
	}
	web.WriteJSON(w, http.StatusOK, ListBody{Jobs: out})
	return nil
}

// ListBody is GET /train/v1/jobs.
type ListBody struct {
	Jobs []JobBody `json:"jobs"`
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) error {
	j, err := a.m.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, NewJobBody(j, a.m.Now()))
	return nil
}
