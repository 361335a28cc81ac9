package consoleapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fedrisk/fedrisk/internal/console"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

type modelsData struct {
	Models []registryapi.ModelBody
}

// models lists the registered models and their labels.
func (a *API) models(w http.ResponseWriter, r *http.Request, rq *req) error {
	ms, err := rq.api.models(r.Context())
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "models", rq.cat.T("models.title"), modelsData{Models: ms})
}

// versionRow is one version with its halves.
type versionRow struct {
	Version string
	Labels  []string
	Halves  []registryapi.VersionBody
}

type modelData struct {
	Model      registryapi.ModelBody
	Versions   []versionRow // newest first
	History    []registryapi.ChangeBody
	CanOperate bool
	Labels     []string
}

func versionRows(m registryapi.ModelBody) []versionRow {
	var rows []versionRow
	for _, v := range m.Versions {
		if n := len(rows); n > 0 && rows[n-1].Version == v.Version {
			rows[n-1].Halves = append(rows[n-1].Halves, v)
			continue
		}
		rows = append(rows, versionRow{Version: v.Version, Labels: v.Labels, Halves: []registryapi.VersionBody{v}})
	}
	sort.SliceStable(rows, func(i, j int) bool { return versionNumber(rows[i].Version) > versionNumber(rows[j].Version) })
	return rows
}

func versionNumber(v string) int64 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// model shows a model's versions, labels and label history, and the
// promote and roll-back forms.
func (a *API) model(w http.ResponseWriter, r *http.Request, rq *req) error {
	m, err := rq.api.model(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	hist := slices.Clone(m.History)
	slices.Reverse(hist)
	return a.render(w, r, rq, http.StatusOK, "model", rq.cat.F("models.model_title", m.ID), modelData{
		Model: m, Versions: versionRows(m), History: hist, CanOperate: rq.sess.user.Has(roleOperate),
		Labels: []string{registry.LabelStable, registry.LabelCanary},
	})
}

type versionData struct {
	ModelID    string
	Version    registryapi.VersionBody
	Card       []console.KV
	Truncated  bool
	CardErr    string
	Importance *console.BarChart
	Weights    []console.Importance
	ImpNote    string
	Job        *trainjobapi.JobBody
}

// modelVersion shows one version's card, the feature weights of this
// party's half and the training job that made it.
func (a *API) modelVersion(w http.ResponseWriter, r *http.Request, rq *req) error {
	id, ver := r.PathValue("id"), r.PathValue("version")
	role := r.URL.Query().Get("role")
	if role != "" && role != registry.RoleGuest && role != registry.RoleHost {
		role = ""
	}
	withHalf := rq.sess.user.Has(roleOperate) // the half document needs the operator role
	v, err := rq.api.version(r.Context(), id, ver, role, withHalf)
	if err != nil {
		return err
	}
	cat := rq.cat
	d := versionData{ModelID: id, Version: v}
	if len(v.Card) > 0 {
		d.Card, d.Truncated, err = console.FlattenJSON(v.Card, 300)
		if err != nil {
			d.CardErr = err.Error()
		}
	}
	switch {
	case !withHalf:
		d.ImpNote = cat.T("models.importance_needs_operator")
	case len(v.Half) > 0:
		imp, err := console.FeatureImportance(v.Half)
		switch {
		case errors.Is(err, console.ErrNoImportance):
			d.ImpNote = cat.T("models.importance_none")
		case err != nil:
			d.ImpNote = err.Error()
		default:
			chart := console.ImportanceChart(cat, imp, 30)
			d.Importance, d.Weights = &chart, imp
		}
	}
	if jobs, err := rq.api.trainJobs(r.Context()); err == nil {
		for _, j := range jobs {
			if j.ModelID == id && j.ModelVersion == v.Version && j.Role == v.Role {
				d.Job = &j
				break
			}
		}
	}
	return a.render(w, r, rq, http.StatusOK, "version", cat.F("models.version_title", id, v.Version), d)
}

func formLabel(r *http.Request) (string, bool) {
	l := r.PostForm.Get("label")
	if l == "" {
		l = registry.LabelStable
	}
	return l, registry.ValidLabel(l) == nil
}

// promote points a label at a version after a confirmation step.
func (a *API) promote(w http.ResponseWriter, r *http.Request, rq *req) error {
	cat := rq.cat
	id := r.PathValue("id")
	label, ok := formLabel(r)
	version := strings.TrimSpace(r.PostForm.Get("version"))
	if !ok || version == "" || len(version) > 32 {
		return &consoleError{http.StatusBadRequest, cat.T("error.bad_input")}
	}
	m, err := rq.api.model(r.Context(), id)
	if err != nil {
		return err
	}
	back := "/models/" + url.PathEscape(m.ID)
	if r.PostForm.Get("step") != "confirm" {
		current := m.Labels[label]
		if current == "" {
			current = "—"
		}
		return a.render(w, r, rq, http.StatusOK, "confirm", cat.T("models.promote.confirm_title"), confirmData{
			Heading: cat.T("models.promote.confirm_title"), Intro: cat.F("models.promote.confirm_intro", label),
			Rows: []console.KV{{Key: cat.T("models.model"), Value: m.ID}, {Key: cat.T("models.label"), Value: label},
				{Key: cat.T("models.now_points_at"), Value: current}, {Key: cat.T("models.will_point_at"), Value: version}},
			Action: back + "/promote", Fields: []console.KV{{Key: "version", Value: version}, {Key: "label", Value: label}, {Key: "step", Value: "confirm"}},
			Confirm: cat.T("models.promote.confirm"), Cancel: back,
		})
	}
	ch, err := rq.api.promote(r.Context(), m.ID, version, label)
	if err != nil {
		return err
	}
	a.sessions.setFlash(rq.sess, "ok", cat.F("models.promoted", ch.Label, ch.Version, orDash(ch.Previous)))
	http.Redirect(w, r, back, http.StatusSeeOther)
	return errHandled
}

// rollback moves a label back after a confirmation step.
func (a *API) rollback(w http.ResponseWriter, r *http.Request, rq *req) error {
	cat := rq.cat
	label, ok := formLabel(r)
	if !ok {
		return &consoleError{http.StatusBadRequest, cat.T("error.bad_input")}
	}
	m, err := rq.api.model(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	back := "/models/" + url.PathEscape(m.ID)
	if r.PostForm.Get("step") != "confirm" {
		var hist []registry.LabelChange
		for _, h := range m.History {
			if h.Label == label {
				hist = append(hist, registry.LabelChange{Label: h.Label, Action: h.Action, Version: h.Version, Previous: h.Previous})
			}
		}
		target, ok := registry.RollbackTarget(hist)
		if !ok {
			target = cat.T("models.rollback.nothing")
		}
		return a.render(w, r, rq, http.StatusOK, "confirm", cat.T("models.rollback.confirm_title"), confirmData{
			Heading: cat.T("models.rollback.confirm_title"), Intro: cat.F("models.rollback.confirm_intro", label),
			Rows: []console.KV{{Key: cat.T("models.model"), Value: m.ID}, {Key: cat.T("models.label"), Value: label},
				{Key: cat.T("models.now_points_at"), Value: orDash(m.Labels[label])}, {Key: cat.T("models.will_point_at"), Value: target}},
			Action: back + "/rollback", Fields: []console.KV{{Key: "label", Value: label}, {Key: "step", Value: "confirm"}},
			Confirm: cat.T("models.rollback.confirm"), Cancel: back, Danger: true,
		})
	}
	ch, err := rq.api.rollback(r.Context(), m.ID, label)
	if err != nil {
		return err
	}
	a.sessions.setFlash(rq.sess, "ok", cat.F("models.rolled_back", ch.Label, orDash(ch.Version), orDash(ch.Previous)))
	http.Redirect(w, r, back, http.StatusSeeOther)
	return errHandled
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
