package servingapi

import (
	"github.com/fedrisk/fedrisk/internal/serving"
)

// ScoreBody is the body of POST /score (and /score/v1/score).
type ScoreBody struct {
	// Subject is the raw subject identifier (normalised by the guest; it
	// never leaves the guest and is never logged).
	Subject string `json:"subject"`
	// ConsentToken is the consent token for the model's host; with several
	// hosts, ConsentTokens holds one per host (each names its host).
	ConsentToken  string   `json:"consent_token,omitempty"`
	ConsentTokens []string `json:"consent_tokens,omitempty"`
	// ConsentID (or ConsentIDs) lets the guest's consent service issue the
	// token(s) instead.
	ConsentID  string   `json:"consent_id,omitempty"`
	ConsentIDs []string `json:"consent_ids,omitempty"`
	// Features are request-time values of guest model features, replacing
	// the feature store's values.
	Features map[string]float64 `json:"features,omitempty"`
	// Model is the model id (default "credit-risk").
	Model string `json:"model,omitempty"`
	// Version is a model version or a label ("stable", "canary"); Label is
	// the same for labels only. Default: the node's VERSION.
	Version string `json:"version,omitempty"`
	Label   string `json:"label,omitempty"`
	// Purpose defaults to the node's scoring.purpose.
	Purpose string `json:"purpose,omitempty"`
}

// ItemBody is one subject of a batch.
type ItemBody struct {
	Subject       string             `json:"subject"`
	ConsentToken  string             `json:"consent_token,omitempty"`
	ConsentTokens []string           `json:"consent_tokens,omitempty"`
	ConsentID     string             `json:"consent_id,omitempty"`
	ConsentIDs    []string           `json:"consent_ids,omitempty"`
	Features      map[string]float64 `json:"features,omitempty"`
}

// BatchBody is the body of POST /score/v1/batch.
type BatchBody struct {
	Model   string     `json:"model,omitempty"`
	Version string     `json:"version,omitempty"`
	Label   string     `json:"label,omitempty"`
	Purpose string     `json:"purpose,omitempty"`
	Items   []ItemBody `json:"items"`
}

// ScoreAnswer is the answer of POST /score.
type ScoreAnswer struct {
	RequestID string `json:"request_id"`
	serving.Score
}

// ErrorDetail is an error in a batch item or a partial answer.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BatchResult is one item of a batch answer: a score or an error.
type BatchResult struct {
	*serving.Score
	Error *ErrorDetail `json:"error,omitempty"`
}

// BatchAnswer is the answer of POST /score/v1/batch: one result per item,
// in order.
type BatchAnswer struct {
	RequestID string        `json:"request_id"`
	Scored    int           `json:"scored"`
	Failed    int           `json:"failed"`
	Results   []BatchResult `json:"results"`
}

// PartialBody is the body of the host's POST /score/v1/partial.
type PartialBody struct {
	Token   string `json:"token"`
	Href    string `json:"href"`
	Model   string `json:"model"`
	Version string `json:"version"`
	Purpose string `json:"purpose,omitempty"`
}

// PartialItemBody is one item of a partial batch.
type PartialItemBody struct {
	Token string `json:"token"`
	Href  string `json:"href"`
}

// PartialBatchBody is the body of POST /score/v1/partial/batch.
type PartialBatchBody struct {
	Model   string            `json:"model"`
	Version string            `json:"version"`
	Purpose string            `json:"purpose,omitempty"`
	Items   []PartialItemBody `json:"items"`
}

// PartialResult is a host's answer for one item: a value, or an error
// (refused: the guest must not score the item; otherwise it degrades).
type PartialResult struct {
	Value    *float64     `json:"value,omitempty"`
	Cached   bool         `json:"cached,omitempty"`
	Withheld bool         `json:"withheld,omitempty"`
	Refused  bool         `json:"refused,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
}

// PartialBatchAnswer is the answer of POST /score/v1/partial/batch.
type PartialBatchAnswer struct {
	Results []PartialResult `json:"results"`
}

// BudgetBody is one privacy budget in its current window. It names the
// subject by this host's reference (href) only.
type BudgetBody struct {
	Party             string  `json:"party"`
	Subject           string  `json:"subject_ref"`
	Purpose           string  `json:"purpose"`
	WindowStart       string  `json:"window_start"`
	WindowEnd         string  `json:"window_end"`
	SpentEpsilon      float64 `json:"spent_epsilon"`
	RemainingEpsilon  float64 `json:"remaining_epsilon"`
	TotalEpsilon      float64 `json:"total_epsilon"`
	RemainingFraction float64 `json:"remaining_fraction"`
}

// BudgetsAnswer is a page of GET /score/v1/budgets.
type BudgetsAnswer struct {
	Budgets []BudgetBody `json:"budgets"`
	Next    string       `json:"next,omitempty"`
}

// PolicyBody is a purpose's budget policy (PUT body and answer).
type PolicyBody struct {
	Purpose      string  `json:"purpose,omitempty"` // answers only
	Window       string  `json:"window"`            // Go duration, e.g. "24h"
	TotalEpsilon float64 `json:"total_epsilon"`
	OnExhausted  string  `json:"on_exhausted,omitempty"` // refuse (default) or degrade
}

// PoliciesAnswer is the answer of GET /score/v1/budgets/policies.
type PoliciesAnswer struct {
	Policies []PolicyBody `json:"policies"`
}

// The single-item partial endpoint's error codes and statuses:
// budget_exhausted (429, refuse policy), consent_rejected (403),
// model_not_found (404); under the degrade policy an exhausted budget is a
// 200 answer with withheld true and error code budget_exhausted.
