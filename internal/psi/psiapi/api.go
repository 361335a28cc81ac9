// Package psiapi is the HTTP transport of the PSI service.
//
// The client API (/psi/v1/jobs...) creates, lists, reads and cancels jobs
// and streams a finished intersection as CSV; it authenticates like the
// consent API (bearer tokens with roles, or loopback callers only while
// AUTH_REQUIRED is false).
//
// The peer API (/psi/v1/peer/...) is what the guest's psi service calls at
// the host's: JSON for the handshake and the finish, binary
// application/octet-stream bodies of exactly the agreed size for batches
// (32-byte points; in both-learn mode the reveal batches of 4-byte
// big-endian host positions, at most the session's batch size), JSON
// errors. Only
// registered peers may call it, identified by their verified mutual-TLS
// client certificate (pki.PeerParty); a node without TLS accepts peers on
// the loopback interface only, naming themselves in the X-Fedrisk-Party
// header (development and tests).
//
// Client (HTTP) implements psijob.Peer on top of the peer API, with the
// deadline of the caller's context on every call.
package psiapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Jobs is the job domain as the client API uses it.
type Jobs interface {
	Create(ctx context.Context, r psijob.CreateRequest) (psijob.Job, error)
	Get(ctx context.Context, id string) (psijob.Job, error)
	List(ctx context.Context, f psijob.JobFilter) ([]psijob.Job, error)
	Cancel(ctx context.Context, id, actor string) (psijob.Job, error)
	Export(ctx context.Context, id string, fn func(psijob.ResultRow) error) error
}

// Sessions is the host's session manager as the peer API uses it.
type Sessions interface {
	Open(ctx context.Context, party string, r psijob.OpenRequest) (psijob.OpenResponse, error)
	GuestBatch(ctx context.Context, party, id string, batch int, points []byte) ([]byte, error)
	ShuffledTags(ctx context.Context, party, id string, batch int) ([]byte, error)
	HostBatch(ctx context.Context, party, id string, batch int) ([]byte, error)
	Reveal(ctx context.Context, party, id string, batch int, positions []int) error
	Finish(ctx context.Context, party, id string, f psijob.FinishRequest) error
	Cancel(ctx context.Context, party, id, code, reason string) error
	Abort(ctx context.Context, party, id string, cause error) error
}

// Authenticator resolves bearer tokens.
type Authenticator = authhttp.Authenticator

// Auditor appends security-relevant events.
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Options configure the API.
type Options struct {
	AuthRequired bool
	// Peers identifies the calling party on the peer API.
	Peers   authhttp.Peers
	Auditor Auditor
	Log     *slog.Logger
}

// API serves the PSI endpoints.
type API struct {
	jobs     Jobs
	sessions Sessions
	guard    authhttp.Guard
	opts     Options
}

// New returns the API. sessions may be nil on a node that never hosts.
func New(jobs Jobs, sessions Sessions, authn Authenticator, opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	guard := authhttp.Guard{Tokens: authn, AuthRequired: opts.AuthRequired, Log: opts.Log, MapError: mapError}
	if opts.Auditor != nil {
		guard.Auditor = opts.Auditor
	}
	opts.Peers.API, opts.Peers.Code = "the PSI peer API", psijob.CodeForbidden
	return &API{jobs: jobs, sessions: sessions, guard: guard, opts: opts}
}

// Mount adds the PSI routes to mux.
func (a *API) Mount(mux *http.ServeMux) {
	const p = "/psi/v1"
	operator := []auth.Role{auth.RoleOperator}
	analyst := []auth.Role{auth.RoleAnalyst}

	mux.HandleFunc("POST "+p+"/jobs", a.guard.With(operator, a.createJob))
	mux.HandleFunc("GET "+p+"/jobs", a.guard.With(analyst, a.listJobs))
	mux.HandleFunc("GET "+p+"/jobs/{id}", a.guard.With(analyst, a.getJob))
	mux.HandleFunc("POST "+p+"/jobs/{id}/cancel", a.guard.With(operator, a.cancelJob))
	// The CSV holds identifiers: operators only. A host has one in mode both.
	mux.HandleFunc("GET "+p+"/jobs/{id}/result.csv", a.guard.With(operator, a.resultCSV))

	mux.HandleFunc("POST "+p+"/peer/sessions", a.peer(a.open))
	mux.HandleFunc("PUT "+p+"/peer/sessions/{session}/guest/{batch}", a.peer(a.guestBatch))
	mux.HandleFunc("GET "+p+"/peer/sessions/{session}/shuffled/{batch}", a.peer(a.shuffled))
	mux.HandleFunc("GET "+p+"/peer/sessions/{session}/host/{batch}", a.peer(a.hostBatch))
	mux.HandleFunc("PUT "+p+"/peer/sessions/{session}/reveal/{batch}", a.peer(a.reveal))
	mux.HandleFunc("POST "+p+"/peer/sessions/{session}/finish", a.peer(a.finish))
	mux.HandleFunc("POST "+p+"/peer/sessions/{session}/cancel", a.peer(a.cancelSession))
}

func principal(ctx context.Context) auth.Principal { return authhttp.PrincipalOf(ctx) }

func (a *API) audit(ctx context.Context, ev audit.Event) {
	if a.opts.Auditor == nil {
		return
	}
	if _, err := a.opts.Auditor.Append(ctx, ev); err != nil {
		a.opts.Log.WarnContext(ctx, "audit append failed", "action", ev.Action, "err", err)
	}
}

// peer admits registered peers only.
func (a *API) peer(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		party, err := a.opts.Peers.Party(r)
		if err != nil {
			a.audit(r.Context(), audit.Event{Actor: "anonymous", Action: "psi.peer.refused", Details: map[string]string{"reason": err.Error(), "route": r.Pattern}})
			web.WriteError(w, r, a.opts.Log, err)
			return
		}
		if a.sessions == nil {
			web.WriteError(w, r, a.opts.Log, web.Errorf(http.StatusNotFound, "not_found", "this node does not host PSI sessions"))
			return
		}
		r = r.WithContext(authhttp.WithParty(r.Context(), party))
		if err := h(w, r); err != nil {
			web.WriteError(w, r, a.opts.Log, mapError(err))
		}
	}
}

// mapError turns domain errors into HTTP errors with client-safe messages.
func mapError(err error) error {
	var (
		we *web.Error
		ve *psijob.ValidationError
		ce *psijob.ClosedError
	)
	msg := func() string { return strings.TrimPrefix(err.Error(), "cancel psi job: ") }
	switch {
	case errors.As(err, &we):
		return we
	case errors.As(err, &ve):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_field", Message: ve.Error(), Cause: err}
	case errors.As(err, &ce):
		return &web.Error{Status: http.StatusGone, Code: "session_" + ce.Code, Message: ce.Reason, Cause: err}
	case errors.Is(err, psijob.ErrNotFound):
		return &web.Error{Status: http.StatusNotFound, Code: "not_found", Message: "psi job not found", Cause: err}
	case errors.Is(err, psijob.ErrFinal):
		return &web.Error{Status: http.StatusConflict, Code: "job_finished", Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrNotDone):
		return &web.Error{Status: http.StatusConflict, Code: "not_done", Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrNoRows):
		return &web.Error{Status: http.StatusConflict, Code: "no_rows", Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrNoConsent):
		return &web.Error{Status: http.StatusUnprocessableEntity, Code: "consent_unavailable", Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrInvalid):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid", Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrSessionNotFound):
		return &web.Error{Status: http.StatusNotFound, Code: psijob.CodeSessionNotFound, Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrBatchTooLarge):
		return &web.Error{Status: http.StatusRequestEntityTooLarge, Code: psijob.CodeProtocol, Message: msg(), Cause: err}
	case errors.Is(err, psi.ErrInvalidPoint):
		return &web.Error{Status: http.StatusBadRequest, Code: psijob.CodeInvalidPoint, Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrProtocol):
		return &web.Error{Status: http.StatusBadRequest, Code: psijob.CodeProtocol, Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrNoHostJob):
		return &web.Error{Status: http.StatusConflict, Code: psijob.CodeNoHostJob, Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrMismatch):
		return &web.Error{Status: http.StatusConflict, Code: psijob.CodeMismatch, Message: msg(), Cause: err}
	case errors.Is(err, psijob.ErrNotReady):
		return &web.Error{Status: http.StatusConflict, Code: psijob.CodeNotReady, Message: msg(), Cause: err}
	}
	return err
}
