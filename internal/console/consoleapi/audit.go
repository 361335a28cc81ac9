package consoleapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
)

// auditPageSize is how many entries the audit page shows.
const auditPageSize = 50

type auditData struct {
	Entries   []consentapi.AuditEntryBody // newest first
	Head      int64
	Action    string
	Actions   []string
	Older     string // query of the older page ("" for none)
	Newer     string
	Report    *consentapi.AuditReport
	ReportErr string
}

// auditActions are the actions the filter offers.
func auditActions() []string {
	return []string{"consent.grant", "consent.withdraw", "consent.expire", "token.issue", "token.verify_failed",
		"purpose.create", "purpose.publish_policy", "subject.export", "subject.delete", "psi.job.create",
		"psi.job.cancel", "psi.result.export", "psi.peer.refused", "model.promote", "model.rollback",
		"key.rotate", "auth.failed", "auth.token_create", "auth.token_revoke"}
}

// validAction accepts an action name as the audit route does.
func validAction(s string) bool {
	if len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// audit browses the audit log, newest first, with the chain's
// verification status.
func (a *API) audit(w http.ResponseWriter, r *http.Request, rq *req) error {
	q := r.URL.Query()
	d := auditData{Actions: auditActions()}
	if act := q.Get("action"); act != "" && validAction(act) {
		d.Action = act
	}
	var wg sync.WaitGroup
	var rep consentapi.AuditReport
	var repErr error
	wg.Go(func() { rep, repErr = rq.api.auditVerify(r.Context()) })
	first, err := rq.api.auditPage(r.Context(), 0, 1, "")
	if err != nil {
		wg.Wait()
		return err
	}
	d.Head = first.Head
	after := int64(0)
	if d.Action == "" {
		after = max(0, d.Head-auditPageSize)
	}
	if v, err := strconv.ParseInt(q.Get("after"), 10, 64); err == nil && v >= 0 {
		after = v
	}
	page, err := rq.api.auditPage(r.Context(), after, auditPageSize, d.Action)
	wg.Wait()
	if err != nil {
		return err
	}
	if repErr != nil {
		d.ReportErr = shortErr(repErr)
	} else {
		d.Report = &rep
	}
	link := func(after int64) string {
		v := "after=" + strconv.FormatInt(after, 10)
		if d.Action != "" {
			v += "&action=" + url.QueryEscape(d.Action)
		}
		return "?" + v
	}
	if n := len(page.Entries); n == auditPageSize && page.Entries[n-1].Seq < page.Head {
		d.Newer = link(page.Entries[n-1].Seq)
	}
	if d.Action == "" && after > 0 {
		d.Older = link(max(0, after-auditPageSize))
	} else if d.Action != "" && after > 0 {
		d.Older = link(0)
	}
	d.Entries = slices.Clone(page.Entries)
	slices.Reverse(d.Entries)
	return a.render(w, r, rq, http.StatusOK, "audit", rq.cat.T("audit.title"), d)
}
