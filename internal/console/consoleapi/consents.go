package consoleapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/console"
)

// purposeView is a purpose with its current policy text.
type purposeView struct {
	consent.Purpose
	PolicyText string
}

type consentsData struct {
	Purposes  []purposeView
	Channels  []string
	Collector string
	Looked    bool // a lookup ran
	Results   []consent.Consent
	Error     string
	Now       time.Time
}

// channels are offered for the evidence of a grant.
func channels() []string { return []string{"branch", "mobile_app", "web", "phone", "paper"} }

func (a *API) consentsData(r *http.Request, rq *req) (consentsData, error) {
	ps, err := rq.api.purposes(r.Context())
	if err != nil {
		return consentsData{}, err
	}
	d := consentsData{Channels: channels(), Collector: rq.sess.user.Name, Now: time.Now()}
	for _, p := range ps {
		pv := purposeView{Purpose: p}
		if pol, err := rq.api.policy(r.Context(), p.ID, p.PolicyVersion); err == nil {
			pv.PolicyText = pol.Text
		}
		d.Purposes = append(d.Purposes, pv)
	}
	return d, nil
}

// consents: purposes and policies, the lookup and grant forms.
func (a *API) consents(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.consentsData(r, rq)
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "consents", rq.cat.T("consents.title"), d)
}

// MaxSubjectLen bounds a subject identifier typed into a form.
const MaxSubjectLen = 256

func formSubject(r *http.Request) (string, bool) {
	s := strings.TrimSpace(r.PostForm.Get("subject"))
	return s, s != "" && len(s) <= MaxSubjectLen
}

// lookup lists one subject's consents. The identifier comes in the POST
// body and goes to the consent service in a body: never in a URL or a log.
func (a *API) lookup(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.consentsData(r, rq)
	if err != nil {
		return err
	}
	subject, ok := formSubject(r)
	status := http.StatusOK
	if !ok {
		d.Error, status = rq.cat.T("consents.subject_required"), http.StatusBadRequest
	} else {
		list, err := rq.api.subjectConsents(r.Context(), subject)
		if err != nil {
			return err
		}
		slices.SortStableFunc(list, func(x, y consent.Consent) int { return y.GrantedAt.Compare(x.GrantedAt) })
		d.Looked, d.Results = true, list
	}
	return a.render(w, r, rq, status, "consents", rq.cat.T("consents.title"), d)
}

// confirmData is the generic confirmation page: what will happen, the
// fields to post again with step=confirm.
type confirmData struct {
	Heading, Intro string
	Rows           []console.KV
	Action         string
	Fields         []console.KV
	Confirm        string
	Cancel         string
	Danger         bool
	Text           string // a policy text to read before confirming
}

// grant records a consent after a confirmation step.
func (a *API) grant(w http.ResponseWriter, r *http.Request, rq *req) error {
	cat := rq.cat
	f := r.PostForm
	subject, ok := formSubject(r)
	purpose := strings.TrimSpace(f.Get("purpose"))
	party := strings.TrimSpace(f.Get("party"))
	cats := splitList(f.Get("categories"))
	channel, collector, reference := strings.TrimSpace(f.Get("channel")), strings.TrimSpace(f.Get("collector")), strings.TrimSpace(f.Get("reference"))
	if !ok || purpose == "" || party == "" || len(cats) == 0 || channel == "" || collector == "" {
		d, err := a.consentsData(r, rq)
		if err != nil {
			return err
		}
		d.Error = cat.T("consents.grant_incomplete")
		return a.render(w, r, rq, http.StatusBadRequest, "consents", cat.T("consents.title"), d)
	}
	ps, err := rq.api.purposes(r.Context())
	if err != nil {
		return err
	}
	idx := slices.IndexFunc(ps, func(p consent.Purpose) bool { return p.ID == purpose })
	if idx < 0 {
		return &consoleError{http.StatusBadRequest, cat.T("consents.unknown_purpose")}
	}
	p := ps[idx]
	if f.Get("step") != "confirm" {
		pol, _ := rq.api.policy(r.Context(), p.ID, p.PolicyVersion)
		fields := []console.KV{{Key: "subject", Value: subject}, {Key: "purpose", Value: purpose}, {Key: "party", Value: party},
			{Key: "categories", Value: strings.Join(cats, ", ")}, {Key: "channel", Value: channel}, {Key: "collector", Value: collector},
			{Key: "reference", Value: reference}, {Key: "policy_version", Value: strconv.Itoa(p.PolicyVersion)},
			{Key: "idempotency_key", Value: randomToken()[:32]}, {Key: "step", Value: "confirm"}}
		return a.render(w, r, rq, http.StatusOK, "confirm", cat.T("consents.grant.confirm_title"), confirmData{
			Heading: cat.T("consents.grant.confirm_title"), Intro: cat.T("consents.grant.confirm_intro"),
			Rows: []console.KV{{Key: cat.T("consents.purpose"), Value: p.ID + " — " + p.Description},
				{Key: cat.T("consents.policy_version"), Value: strconv.Itoa(p.PolicyVersion)},
				{Key: cat.T("consents.party"), Value: party}, {Key: cat.T("consents.categories"), Value: strings.Join(cats, ", ")},
				{Key: cat.T("consents.channel"), Value: cat.S("channel", channel)}, {Key: cat.T("consents.collector"), Value: collector},
				{Key: cat.T("consents.reference"), Value: reference}},
			Action: "/consents/grant", Fields: fields, Confirm: cat.T("consents.grant.confirm"), Cancel: "/consents", Text: pol.Text,
		})
	}
	version, err := strconv.Atoi(f.Get("policy_version"))
	if err != nil || version < 1 {
		return &consoleError{http.StatusBadRequest, cat.T("error.bad_input")}
	}
	key := f.Get("idempotency_key")
	if len(key) < 16 || len(key) > 64 {
		return &consoleError{http.StatusBadRequest, cat.T("error.bad_input")}
	}
	c, err := rq.api.grant(r.Context(), consentapi.GrantBody{
		Subject: subject, Purpose: purpose, Party: party, DataCategories: cats, PolicyVersion: version,
		Evidence: consentapi.EvidenceBody{Channel: channel, Collector: collector, Reference: reference,
			CollectedAt: time.Now().UTC().Format(time.RFC3339)},
	}, key)
	if err != nil {
		return err
	}
	a.sessions.setFlash(rq.sess, "ok", cat.F("consents.granted", c.ID))
	http.Redirect(w, r, "/consents/"+url.PathEscape(c.ID), http.StatusSeeOther)
	return errHandled
}

// withdraw withdraws a consent after a confirmation step.
func (a *API) withdraw(w http.ResponseWriter, r *http.Request, rq *req) error {
	cat := rq.cat
	id := strings.TrimSpace(r.PostForm.Get("consent_id"))
	if id == "" || len(id) > 128 {
		return &consoleError{http.StatusBadRequest, cat.T("error.bad_input")}
	}
	c, err := rq.api.consentByID(r.Context(), id)
	if err != nil {
		return err
	}
	if r.PostForm.Get("step") != "confirm" {
		return a.render(w, r, rq, http.StatusOK, "confirm", cat.T("consents.withdraw.confirm_title"), confirmData{
			Heading: cat.T("consents.withdraw.confirm_title"), Intro: cat.T("consents.withdraw.confirm_intro"),
			Rows: []console.KV{{Key: cat.T("consents.id"), Value: c.ID}, {Key: cat.T("consents.subject_ref"), Value: c.SubjectRef},
				{Key: cat.T("consents.purpose"), Value: c.Purpose}, {Key: cat.T("consents.party"), Value: c.Party},
				{Key: cat.T("consents.status"), Value: cat.S("status", string(c.EffectiveStatus(time.Now())))},
				{Key: cat.T("consents.granted_at"), Value: cat.Time(c.GrantedAt)}},
			Action: "/consents/withdraw", Fields: []console.KV{{Key: "consent_id", Value: c.ID}, {Key: "step", Value: "confirm"}},
			Confirm: cat.T("consents.withdraw.confirm"), Cancel: "/consents/" + url.PathEscape(c.ID), Danger: true,
		})
	}
	c, err = rq.api.withdraw(r.Context(), id)
	if err != nil {
		return err
	}
	a.sessions.setFlash(rq.sess, "ok", cat.F("consents.withdrawn", c.ID))
	http.Redirect(w, r, "/consents/"+url.PathEscape(c.ID), http.StatusSeeOther)
	return errHandled
}

type consentDetailData struct {
	Consent     consent.Consent
	Status      string
	Receipt     *console.Receipt
	ReceiptErr  string
	CanWithdraw bool
}

// consentDetail shows a consent and its receipt, verified against the
// consent service's JWKS.
func (a *API) consentDetail(w http.ResponseWriter, r *http.Request, rq *req) error {
	c, err := rq.api.consentByID(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := consentDetailData{Consent: c, Status: string(c.EffectiveStatus(time.Now())),
		CanWithdraw: rq.sess.user.Has(roleOperate) && c.EffectiveStatus(time.Now()) == consent.StatusActive}
	if c.Receipt != "" {
		jwks, err := rq.api.jwks(r.Context())
		if err != nil {
			d.ReceiptErr = shortErr(err)
		} else if rc, err := console.VerifyReceipt(c.Receipt, jwks); err != nil {
			d.ReceiptErr = err.Error()
		} else {
			d.Receipt = &rc
		}
	}
	return a.render(w, r, rq, http.StatusOK, "consent", rq.cat.F("consents.detail_title", c.ID), d)
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '，' || r == '\n' }) {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
