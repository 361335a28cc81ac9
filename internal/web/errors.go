// Package web holds the HTTP conventions every fedrisk service shares.
//
// They are JSON errors ({"error":{"code":"...","message":"..."}}), strict
// JSON request decoding under a body-size limit, request ids, structured
// access logs, Prometheus request metrics labelled by route template (never
// by raw path), /health, /ready and /metrics, and a server with timeouts and
// graceful shutdown.
//
// Domain packages never import net/http; their transport adapters use this
// package to map domain errors to statuses with a client-safe message,
// keeping the logged cause apart.
package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// Error is an HTTP error with a client-safe message. Cause is logged, never
// sent.
type Error struct {
	Status  int
	Code    string // stable, machine-readable, snake_case
	Message string // safe to show to the client
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes err as a JSON error. An *Error keeps its status and
// message; anything else is a 500 whose cause is logged, not sent.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var he *Error
	if !errors.As(err, &he) {
		he = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
	}
	if he.Status >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", "request_id", RequestID(r.Context()), "code", he.Code, "err", err)
	}
	WriteJSON(w, he.Status, ErrorBody{Error: ErrorDetail{Code: he.Code, Message: he.Message, RequestID: RequestID(r.Context())}})
}

// codeFor turns a status into a snake_case code, e.g. 405 → method_not_allowed.
func codeFor(status int) string {
	t := http.StatusText(status)
	if t == "" {
		return "error"
	}
	return strings.ReplaceAll(strings.ToLower(t), " ", "_")
}

// jsonErrorWriter turns plain-text errors written with http.Error (the
// ServeMux's 404 and 405, for instance) into the JSON error shape.
type jsonErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (w *jsonErrorWriter) WriteHeader(status int) {
	if status >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.replaced = true
		w.Header().Del("Content-Length")
		msg := strings.ToLower(http.StatusText(status))
		if status == http.StatusMethodNotAllowed {
			msg += "; allowed: " + w.Header().Get("Allow")
		}
		WriteJSON(w.ResponseWriter, status, ErrorBody{Error: ErrorDetail{Code: codeFor(status), Message: msg, RequestID: RequestID(w.r.Context())}})
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Clip shortens s to at most n bytes of valid UTF-8: for texts from
// elsewhere (a peer's error message) that end up in answers and logs.
func Clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// PeerErrorDetail reads the error answer of another fedrisk node (or a
// proxy in front of it): the JSON error shape's code and message, clipped,
// or "http_error" and the status when the body is something else.
func PeerErrorDetail(status int, body []byte) ErrorDetail {
	var e ErrorBody
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return ErrorDetail{Code: "http_error", Message: fmt.Sprintf("HTTP %d", status)}
	}
	return ErrorDetail{Code: Clip(e.Error.Code, 64), Message: Clip(e.Error.Message, 500), RequestID: Clip(e.Error.RequestID, 64)}
}

// MaxErrorBody bounds what ReadPeerError reads of an error answer.
const MaxErrorBody = 64 << 10

// ReadPeerError reads (at most MaxErrorBody of) an error answer's body and
// decodes it with PeerErrorDetail.
func ReadPeerError(resp *http.Response) ErrorDetail {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	return PeerErrorDetail(resp.StatusCode, b)
}
