package psiapi

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// InputBody names a job's identifier source.
type InputBody struct {
	Kind   string `json:"kind"`            // csv or table
	Path   string `json:"path,omitempty"`  // csv: absolute path on the node
	Table  string `json:"table,omitempty"` // table of the node's database
	Column string `json:"column"`
}

// NormalizationBody is how identifiers are normalised (both parties must
// agree).
type NormalizationBody struct {
	Trim     bool   `json:"trim"`
	CaseFold bool   `json:"case_fold"`
	Phone    string `json:"phone,omitempty"` // default country calling code: identifiers are phone numbers, made E.164
}

// CreateJobBody creates a job.
type CreateJobBody struct {
	Role          string             `json:"role,omitempty"` // guest or host; default: the node's role
	Peer          string             `json:"peer"`
	PeerJob       string             `json:"peer_job,omitempty"`
	Input         InputBody          `json:"input"`
	Purpose       string             `json:"purpose,omitempty"`
	Mode          string             `json:"mode,omitempty"`          // intersection (default), cardinality or both
	Normalization *NormalizationBody `json:"normalization,omitempty"` // default: trim only
	BatchSize     int                `json:"batch_size,omitempty"`
}

// Progress is how far a job is.
type Progress struct {
	DoneItems  int64   `json:"done_items"`
	TotalItems int64   `json:"total_items"`
	Percent    float64 `json:"percent"`
	Rate       float64 `json:"rate"`        // items per second
	ETASeconds float64 `json:"eta_seconds"` // 0 when unknown or finished
}

// JobBody is a job as the API shows it.
type JobBody struct {
	ID               string            `json:"id"`
	Role             string            `json:"role"`
	Peer             string            `json:"peer"`
	PeerJob          string            `json:"peer_job,omitempty"`
	Status           string            `json:"status"`
	Mode             string            `json:"mode"`
	Purpose          string            `json:"purpose,omitempty"`
	Input            InputBody         `json:"input"`
	Normalization    NormalizationBody `json:"normalization"`
	BatchSize        int               `json:"batch_size"`
	RowsRead         int64             `json:"rows_read"`
	LocalCount       int64             `json:"local_count"`
	PeerCount        int64             `json:"peer_count"`
	Duplicates       int64             `json:"duplicates"`
	Invalid          int64             `json:"invalid"`
	Excluded         int64             `json:"excluded_without_consent"`
	Progress         Progress          `json:"progress"`
	IntersectionSize *int64            `json:"intersection_size,omitempty"`
	Error            string            `json:"error,omitempty"`
	CreatedBy        string            `json:"created_by,omitempty"`
	CreatedAt        string            `json:"created_at"`
	StartedAt        string            `json:"started_at,omitempty"`
	UpdatedAt        string            `json:"updated_at,omitempty"`
	FinishedAt       string            `json:"finished_at,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// ToBody converts a job to its wire form.
func ToBody(j psijob.Job) JobBody {
	p := Progress{DoneItems: j.DoneItems, TotalItems: j.TotalItems, Rate: j.Rate, ETASeconds: j.ETA().Seconds()}
	if j.TotalItems > 0 {
		p.Percent = float64(int(1000*float64(j.DoneItems)/float64(j.TotalItems))) / 10
	}
	if j.Status.Final() {
		p.Rate = 0
		if j.Status == psijob.StatusDone {
			p.Percent = 100
		}
	}
	return JobBody{ID: j.ID, Role: string(j.Role), Peer: j.Peer.Party, PeerJob: j.PeerJob, Status: string(j.Status), Mode: string(j.Mode),
		Purpose: j.Purpose, Input: InputBody{Kind: j.Input.Kind, Path: j.Input.Path, Table: j.Input.Table, Column: j.Input.Column},
		Normalization: NormalizationBody{Trim: j.Normalization.Trim, CaseFold: j.Normalization.CaseFold, Phone: j.Normalization.Phone},
		BatchSize:     j.BatchSize, RowsRead: j.RowsRead, LocalCount: j.LocalCount, PeerCount: j.PeerCount, Duplicates: j.Duplicates,
		Invalid: j.Invalid, Excluded: j.Excluded, Progress: p, IntersectionSize: j.IntersectionSize, Error: j.Error,
		CreatedBy: j.CreatedBy, CreatedAt: rfc3339(j.CreatedAt), StartedAt: rfc3339(j.StartedAt), UpdatedAt: rfc3339(j.UpdatedAt),
		FinishedAt: rfc3339(j.FinishedAt)}
}

// CreateRequest converts a create body to the domain request.
func (b CreateJobBody) CreateRequest(actor string) (psijob.CreateRequest, error) {
	norm := psi.Normalization{Trim: true}
	if b.Normalization != nil {
		norm = psi.Normalization{Trim: b.Normalization.Trim, CaseFold: b.Normalization.CaseFold, Phone: b.Normalization.Phone}
	}
	if err := norm.Validate(); err != nil {
		return psijob.CreateRequest{}, &psijob.ValidationError{Field: "normalization.phone", Msg: "must be a country calling code of 1-3 digits, e.g. 86"}
	}
	return psijob.CreateRequest{Role: psijob.Role(b.Role), Peer: b.Peer, PeerJob: b.PeerJob,
		Input:   psijob.Input{Kind: b.Input.Kind, Path: b.Input.Path, Table: b.Input.Table, Column: b.Input.Column},
		Purpose: b.Purpose, Mode: psijob.Mode(b.Mode), Normalization: norm, BatchSize: b.BatchSize, Actor: actor}, nil
}

func (a *API) createJob(w http.ResponseWriter, r *http.Request) error {
	var b CreateJobBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	actor := principal(r.Context()).Actor()
	req, err := b.CreateRequest(actor)
	if err != nil {
		return err
	}
	j, err := a.jobs.Create(r.Context(), req)
	if err != nil {
		return err
	}
	a.audit(r.Context(), audit.Event{Actor: actor, Action: "psi.job.create", Object: j.ID,
		Details: map[string]string{"role": string(j.Role), "peer": j.Peer.Party, "mode": string(j.Mode), "input": j.Input.Kind, "purpose": j.Purpose}})
	w.Header().Set("Location", "/psi/v1/jobs/"+j.ID)
	web.WriteJSON(w, http.StatusCreated, ToBody(j))
	return nil
}

func (a *API) listJobs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := psijob.JobFilter{Role: psijob.Role(q.Get("role"))}
	if f.Role != "" && f.Role != psijob.RoleGuest && f.Role != psijob.RoleHost {
		return web.Errorf(http.StatusBadRequest, "invalid_query", "role must be guest or host")
	}
	if st := q.Get("status"); st != "" {
		s := psijob.Status(st)
		switch s {
		case psijob.StatusPending, psijob.StatusRunning, psijob.StatusDone, psijob.StatusFailed, psijob.StatusCancelled:
		default:
			return web.Errorf(http.StatusBadRequest, "invalid_query", "status must be pending, running, done, failed or cancelled")
		}
		f.Status = []psijob.Status{s}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return web.Errorf(http.StatusBadRequest, "invalid_query", "limit must be 1..1000")
		}
		f.Limit = n
	}
	jobs, err := a.jobs.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]JobBody, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, ToBody(j))
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"jobs": out})
	return nil
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) error {
	j, err := a.jobs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, ToBody(j))
	return nil
}

func (a *API) cancelJob(w http.ResponseWriter, r *http.Request) error {
	actor := principal(r.Context()).Actor()
	j, err := a.jobs.Cancel(r.Context(), r.PathValue("id"), actor)
	if err != nil {
		return err
	}
	a.audit(r.Context(), audit.Event{Actor: actor, Action: "psi.job.cancel", Object: j.ID, Details: map[string]string{"role": string(j.Role), "peer": j.Peer.Party}})
	web.WriteJSON(w, http.StatusOK, ToBody(j))
	return nil
}

// resultCSV streams the intersection: "row,id" (row: 0-based data row of
// the job's input — the guest's, or the host's in mode both; id: the
// normalised identifier).
func (a *API) resultCSV(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var cw *csv.Writer
	rows := 0
	err := a.jobs.Export(r.Context(), id, func(row psijob.ResultRow) error {
		if cw == nil {
			cw = a.startCSV(w, r, id)
		}
		rows++
		if err := cw.Write([]string{strconv.Itoa(row.Row), row.ID}); err != nil {
			return err
		}
		if rows%4096 == 0 {
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
	if err != nil {
		if cw == nil {
			return err
		}
		// The status is sent: cut the stream so the client sees it broken.
		a.opts.Log.WarnContext(r.Context(), "psi result stream failed", "job", id, "err", err)
		panic(http.ErrAbortHandler)
	}
	if cw == nil { // an empty intersection
		cw = a.startCSV(w, r, id)
	}
	cw.Flush()
	return cw.Error()
}

func (a *API) startCSV(w http.ResponseWriter, r *http.Request, id string) *csv.Writer {
	a.audit(r.Context(), audit.Event{Actor: principal(r.Context()).Actor(), Action: "psi.result.export", Object: id})
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`-intersection.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"row", "id"})
	return cw
}
