package consentapi

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/web"
)

// The read-only routes the web console needs beside the consent API:
//
//	GET /consent/v1/whoami        the caller's principal and roles (any role)
//	GET /consent/v1/audit         a page of the audit log (analyst or higher)
//	GET /consent/v1/audit/verify  the whole log checked against its signed
//	                              checkpoints (analyst or higher)
//
// The audit log holds pseudonyms, never raw identifiers; these routes change
// nothing.

// AuditLog is the audit log as the read-only routes use it.
type AuditLog interface {
	// Head is the seq of the newest entry (0 for an empty log).
	Head(ctx context.Context) (int64, error)
	// List returns up to limit entries after seq after, oldest first,
	// only those of action when it is not "".
	List(ctx context.Context, after int64, limit int, action string) ([]audit.Entry, error)
	// Verify checks every entry and checkpoint.
	Verify(ctx context.Context) (audit.Report, error)
}

// Audit page limits.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 500
)

// WhoAmI is the answer of GET /consent/v1/whoami.
type WhoAmI struct {
	Kind  string   `json:"kind"` // token, peer or local
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// AuditEntryBody is one audit entry as the API shows it.
type AuditEntryBody struct {
	Seq      int64             `json:"seq"`
	At       time.Time         `json:"at"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Subject  string            `json:"subject,omitempty"` // a pseudonym
	Object   string            `json:"object,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash string            `json:"prev_hash"` // hex
	Hash     string            `json:"hash"`      // hex
}

// AuditPage is the answer of GET /consent/v1/audit.
type AuditPage struct {
	Head    int64            `json:"head"`
	Entries []AuditEntryBody `json:"entries"`
}

// AuditProblem is where verification failed.
type AuditProblem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// AuditReport is the answer of GET /consent/v1/audit/verify.
type AuditReport struct {
	Intact      bool          `json:"intact"`
	Entries     int64         `json:"entries"`
	Checkpoints int           `json:"checkpoints"`
	Head        string        `json:"head,omitempty"` // hex hash of the newest entry
	FirstBad    *AuditProblem `json:"first_bad,omitempty"`
	CheckedAt   time.Time     `json:"checked_at"`
}

// AuditQuery is a parsed GET /consent/v1/audit query.
type AuditQuery struct {
	After  int64
	Limit  int
	Action string
}

// ParseAuditQuery checks the query of GET /consent/v1/audit: after (a seq,
// ≥ 0), limit (1..MaxAuditLimit) and action (letters, digits, '.', '_'
// and '-', at most 128 characters).
func ParseAuditQuery(q url.Values) (AuditQuery, error) {
	out := AuditQuery{Limit: DefaultAuditLimit}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return out, web.Errorf(http.StatusBadRequest, "invalid_query", "after must be a non-negative integer")
		}
		out.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			return out, web.Errorf(http.StatusBadRequest, "invalid_query", "limit must be 1..%d", MaxAuditLimit)
		}
		out.Limit = n
	}
	if v := q.Get("action"); v != "" {
		if len(v) > 128 || !actionChars(v) {
			return out, web.Errorf(http.StatusBadRequest, "invalid_query", "action must be at most 128 letters, digits, '.', '_' or '-'")
		}
		out.Action = v
	}
	return out, nil
}

func actionChars(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MountConsole adds the console's read-only routes (whoami, audit) to mux.
func (a *API) MountConsole(mux *http.ServeMux, log AuditLog) {
	const p = "/consent/v1"
	anyone := auth.Roles()
	analyst := []auth.Role{auth.RoleAnalyst}
	mux.HandleFunc("GET "+p+"/whoami", a.guard.With(anyone, a.whoami))
	mux.HandleFunc("GET "+p+"/audit", a.guard.With(analyst, func(w http.ResponseWriter, r *http.Request) error {
		return listAudit(w, r, log)
	}))
	mux.HandleFunc("GET "+p+"/audit/verify", a.guard.With(analyst, func(w http.ResponseWriter, r *http.Request) error {
		return verifyAudit(w, r, log)
	}))
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	p := principal(r.Context())
	roles := make([]string, len(p.Roles))
	for i, role := range p.Roles {
		roles[i] = string(role)
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, WhoAmI{Kind: p.Kind, Name: p.Name, Roles: roles})
	return nil
}

func listAudit(w http.ResponseWriter, r *http.Request, log AuditLog) error {
	q, err := ParseAuditQuery(r.URL.Query())
	if err != nil {
		return err
	}
	head, err := log.Head(r.Context())
	if err != nil {
		return err
	}
	entries, err := log.List(r.Context(), q.After, q.Limit, q.Action)
	if err != nil {
		return err
	}
	out := AuditPage{Head: head, Entries: make([]AuditEntryBody, len(entries))}
	for i, e := range entries {
		out.Entries[i] = AuditEntryBody{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Subject: e.Subject,
			Object: e.Object, Details: e.Details, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func verifyAudit(w http.ResponseWriter, r *http.Request, log AuditLog) error {
	rep, err := log.Verify(r.Context())
	if err != nil {
		return err
	}
	out := AuditReport{Intact: rep.FirstBad == nil, Entries: rep.Entries, Checkpoints: rep.Checkpoints,
		Head: hex.EncodeToString(rep.Head), CheckedAt: time.Now().UTC()}
	if rep.FirstBad != nil {
		out.FirstBad = &AuditProblem{Seq: rep.FirstBad.Seq, Reason: rep.FirstBad.Reason}
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}
