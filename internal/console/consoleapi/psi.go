package consoleapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/console"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
)

type psiJobsData struct {
	Jobs []psiapi.JobBody
	Live bool // a job is still running: the list refreshes itself
}

func live(status string) bool { return status == "pending" || status == "running" }

func (a *API) psiJobsData(r *http.Request, rq *req) (psiJobsData, error) {
	jobs, err := rq.api.psiJobs(r.Context())
	if err != nil {
		return psiJobsData{}, err
	}
	d := psiJobsData{Jobs: jobs}
	for _, j := range jobs {
		d.Live = d.Live || live(j.Status)
	}
	return d, nil
}

// psiJobs lists the PSI jobs with their progress.
func (a *API) psiJobs(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.psiJobsData(r, rq)
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "psi", rq.cat.T("psi.title"), d)
}

// psiJobsLive is the list as a fragment, for the script to swap in.
func (a *API) psiJobsLive(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.psiJobsData(r, rq)
	if err != nil {
		return err
	}
	return a.fragment(w, r, rq, "psi", "psi-list", d)
}

type psiJobData struct {
	Job       psiapi.JobBody
	Live      bool
	Counts    console.BarChart
	CanExport bool
}

func (a *API) psiJobData(r *http.Request, rq *req) (psiJobData, error) {
	j, err := rq.api.psiJob(r.Context(), r.PathValue("id"))
	if err != nil {
		return psiJobData{}, err
	}
	cat := rq.cat
	items := []console.BarItem{
		{Label: cat.T("psi.local_count"), Value: float64(j.LocalCount), ValueText: console.Int(j.LocalCount), Class: "s1"},
		{Label: cat.T("psi.peer_count"), Value: float64(j.PeerCount), ValueText: console.Int(j.PeerCount), Class: "s3"},
	}
	if j.IntersectionSize != nil {
		items = append(items, console.BarItem{Label: cat.T("psi.intersection"), Value: float64(*j.IntersectionSize), ValueText: console.Int(*j.IntersectionSize), Class: "s2"})
	}
	if j.Excluded > 0 {
		items = append(items, console.BarItem{Label: cat.T("psi.excluded"), Value: float64(j.Excluded), ValueText: console.Int(j.Excluded), Class: "bar-low"})
	}
	return psiJobData{Job: j, Live: live(j.Status), Counts: console.NewBarChart(cat.T("psi.counts"), items),
		CanExport: rq.sess.user.Has(roleOperate) && hasRows(j)}, nil
}

// hasRows reports whether a job has an intersection to export: a guest's
// finished intersection, or either side of a both-learn job.
func hasRows(j psiapi.JobBody) bool {
	return j.Status == "done" && (j.Mode == "both" || (j.Role == "guest" && j.Mode != "cardinality"))
}

// psiJob shows one job: progress (live while it runs), counts, export.
func (a *API) psiJob(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.psiJobData(r, rq)
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "psijob", rq.cat.F("psi.job_title", d.Job.ID), d)
}

func (a *API) psiJobLive(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.psiJobData(r, rq)
	if err != nil {
		return err
	}
	return a.fragment(w, r, rq, "psijob", "psijob-live", d)
}

// validID accepts the ids the services hand out (letters, digits, '_', '-').
func validID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// apiMessage is the message of a service's JSON error body.
func apiMessage(body []byte) string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return shorten(strings.TrimSpace(string(body)), 200)
}

// psiExport streams the job's intersection as CSV (a POST: it holds
// identifiers, so it is never a link a browser might prefetch or log).
func (a *API) psiExport(w http.ResponseWriter, r *http.Request, rq *req) error {
	id := r.PathValue("id")
	if !validID(id) {
		return &consoleError{http.StatusBadRequest, rq.cat.T("error.bad_input")}
	}
	c := rq.api.psi
	hr, err := http.NewRequestWithContext(r.Context(), http.MethodGet, c.Base+pathPSIJobs+"/"+url.PathEscape(id)+"/result.csv", nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return &apiclient.Error{Status: resp.StatusCode, Code: "export_failed", Message: apiMessage(body)}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`-intersection.csv"`)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, resp.Body); err != nil {
		a.log.WarnContext(r.Context(), "console: export cut", "err", err)
		panic(http.ErrAbortHandler) // the status is sent: cut the stream so the browser sees it broken
	}
	return errHandled
}
