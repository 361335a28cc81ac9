package consoleapi

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/console"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
)

type scoringData struct {
	Guest    bool
	Purposes []consent.Purpose
	Models   []string
	Model    string
	Refs     []string // stable, canary, then versions
	Ref      string
	Purpose  string
	Error    string
	Result   *scoreResult
}

type scoreResult struct {
	servingapi.ScoreAnswer
	Probability console.Gauge
	Scale       console.Gauge
	Reasons     console.BarChart
	ConsentIDs  []string
}

func (a *API) scoringData(r *http.Request, rq *req) (scoringData, error) {
	d := scoringData{Guest: a.opts.Role != "host", Model: a.opts.DefaultModel, Ref: registry.LabelStable}
	if !d.Guest {
		return d, nil
	}
	ps, err := rq.api.purposes(r.Context())
	if err != nil {
		return d, err
	}
	d.Purposes = ps
	if len(ps) > 0 {
		d.Purpose = ps[0].ID
	}
	d.Refs = []string{registry.LabelStable, registry.LabelCanary}
	if ms, err := rq.api.models(r.Context()); err == nil {
		for _, m := range ms {
			d.Models = append(d.Models, m.ID)
			if m.ID == d.Model {
				for _, row := range versionRows(m) {
					d.Refs = append(d.Refs, row.Version)
				}
			}
		}
	}
	if !slices.Contains(d.Models, d.Model) && len(d.Models) > 0 {
		d.Model = d.Models[0]
	}
	return d, nil
}

// scoringPage is the playground's form.
func (a *API) scoringPage(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.scoringData(r, rq)
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "scoring", rq.cat.T("scoring.title"), d)
}

// score scores one consented subject. Without a consent id the console
// uses the subject's active consents for the purpose, one per party.
func (a *API) score(w http.ResponseWriter, r *http.Request, rq *req) error {
	cat := rq.cat
	d, err := a.scoringData(r, rq)
	if err != nil {
		return err
	}
	if !d.Guest {
		return &consoleError{http.StatusBadRequest, cat.T("scoring.host_note")}
	}
	f := r.PostForm
	d.Model, d.Ref, d.Purpose = strings.TrimSpace(f.Get("model")), strings.TrimSpace(f.Get("ref")), strings.TrimSpace(f.Get("purpose"))
	subject, ok := formSubject(r)
	show := func(status int, msg string) error {
		d.Error = msg
		return a.render(w, r, rq, status, "scoring", cat.T("scoring.title"), d)
	}
	if !ok || registry.ValidModelID(d.Model) != nil || d.Ref == "" || len(d.Ref) > 32 || d.Purpose == "" {
		return show(http.StatusBadRequest, cat.T("scoring.incomplete"))
	}
	ids := splitList(f.Get("consent_id"))
	if len(ids) == 0 {
		list, err := rq.api.subjectConsents(r.Context(), subject)
		if err != nil {
			return err
		}
		ids = usableConsents(list, d.Purpose, time.Now())
		if len(ids) == 0 {
			return show(http.StatusUnprocessableEntity, cat.T("scoring.no_consent"))
		}
	}
	body := servingapi.ScoreBody{Subject: subject, ConsentIDs: ids, Model: d.Model, Purpose: d.Purpose}
	if d.Ref == registry.LabelStable || d.Ref == registry.LabelCanary {
		body.Label = d.Ref
	} else {
		body.Version = d.Ref
	}
	ans, err := rq.api.score(r.Context(), body)
	if err != nil {
		if msg, ok := refusal(err); ok {
			return show(http.StatusUnprocessableEntity, cat.F("scoring.refused", msg))
		}
		return err
	}
	reasons := make([]console.Reason, len(ans.Reasons))
	for i, rs := range ans.Reasons {
		reasons[i] = console.Reason{Source: rs.Source, Feature: rs.Feature, Contribution: rs.Contribution, Direction: rs.Direction}
	}
	d.Result = &scoreResult{ScoreAnswer: ans, ConsentIDs: ids,
		Probability: console.NewGauge(0, 1, ans.ProbabilityOfDefault),
		Scale:       console.NewGauge(300, 850, float64(ans.Score.Score)),
		Reasons:     console.ReasonChart(cat, reasons)}
	return a.render(w, r, rq, http.StatusOK, "scoring", cat.T("scoring.title"), d)
}

// usableConsents picks, per party, the newest active consent for purpose
// that needs no renewal.
func usableConsents(list []consent.Consent, purpose string, now time.Time) []string {
	best := map[string]consent.Consent{}
	for _, c := range list {
		if c.Purpose != purpose || c.NeedsRenewal || c.EffectiveStatus(now) != consent.StatusActive {
			continue
		}
		if b, ok := best[c.Party]; !ok || c.GrantedAt.After(b.GrantedAt) {
			best[c.Party] = c
		}
	}
	var ids []string
	for _, c := range best {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// refusal is the message of a score the service refused for the subject
// (consent, budget, features), as opposed to a failure or a missing role.
func refusal(err error) (string, bool) {
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusUnauthorized ||
		(ae.Status == http.StatusForbidden && (ae.Code == "forbidden" || ae.Code == "loopback_only")) {
		return "", false
	}
	return ae.Code + ": " + ae.Message, true
}
