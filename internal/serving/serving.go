package serving

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// Defaults.
const (
	DefaultModel   = "credit-risk"
	DefaultPurpose = "credit_risk_assessment"
	// MaxBatch bounds the items of one batch request (guest and host).
	MaxBatch = 1000
	// MaxTokens bounds the consent tokens (or ids) of one item.
	MaxTokens = 16
	// MaxTokenBytes bounds one consent token.
	MaxTokenBytes = 8192
	// DefaultReasons is how many guest reasons an answer lists.
	DefaultReasons = 4
)

// Models gives the model halves this party holds. The model registry
// satisfies it through a small adapter.
type Models interface {
	// GuestModel resolves ref — a version, "stable", "canary", or "" for
	// stable — and returns the guest's half and its version.
	GuestModel(ctx context.Context, modelID, ref string) (*hetero.GuestModel, string, error)
	// HostModel returns this host's half of a version.
	HostModel(ctx context.Context, modelID, version string) (*hetero.HostModel, error)
}

// ErrModelNotFound is what Models return (wrapped) for an unknown model,
// version or label; any other error is a failure to read.
var ErrModelNotFound = errors.New("model not found")

// FeatureReader reads a party's features (*features.Store).
type FeatureReader interface {
	GetBatch(ctx context.Context, view string, entities []string, features []string) ([]features.Vector, error)
}

// Verified is what a verified consent token says.
type Verified struct {
	ConsentID string
	Subject   string // the consent service's pseudonym of the subject
	Audience  string // the host the token is for
	HostRef   string // href claim: HostRef(key, audience, subject id)
}

// Sentinel errors. Every error of this package that a caller can act on is
// an *Error wrapping one of them.
var (
	ErrInvalid     = errors.New("invalid request")             // 400
	ErrConsent     = errors.New("consent refused")             // 403
	ErrNotFound    = errors.New("not found")                   // 404
	ErrBudget      = errors.New("privacy budget exhausted")    // 429
	ErrUnavailable = errors.New("temporarily unavailable")     // 503
	ErrForbidden   = errors.New("not allowed for this caller") // 403
)

// Error is a failure with a stable, machine-readable code and a message
// that is safe to show to the caller (it names no identifier, feature value
// or token).
type Error struct {
	Code    string
	Message string
	Kind    error // one of the sentinels
	Cause   error // logged, never shown
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap lets errors.Is match the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Cause} }

func newErr(kind error, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

func wrapErr(kind error, code string, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// Failure codes of a host, in answers and metrics.
const (
	CodeTimeout         = "timeout"          // the host did not answer within the deadline
	CodeUnavailable     = "unavailable"      // connection failed or the host answered 5xx
	CodeNoConsent       = "no_consent"       // the request carried no token for this host
	CodeBudgetExhausted = "budget_exhausted" // the subject's privacy budget at the host is spent
	CodeConsentRejected = "consent_rejected" // the host refused the token
	CodeModelNotFound   = "model_not_found"  // the host does not hold its half of the version
	CodeRefused         = "refused"          // any other refusal (4xx)
	CodeProtocol        = "protocol_error"   // an answer that does not parse
)

// HostFailure says why a host's partial is missing from a score.
type HostFailure struct {
	Host    string `json:"host"`
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}
