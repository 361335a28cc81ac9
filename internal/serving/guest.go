package serving

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// ConsentVerifier verifies consent tokens for a purpose. On a guest it is
// the guest's own consent service (any audience); on a host it accepts
// only tokens for that host. Errors are *Error values of kind ErrConsent
// (rejected) or ErrUnavailable (could not be checked).
type ConsentVerifier interface {
	Verify(ctx context.Context, token, purpose string) (Verified, error)
}

// TokenIssuer issues a consent token from a consent id (the guest's
// consent service). Errors are *Error values.
type TokenIssuer interface {
	Issue(ctx context.Context, consentID string) (string, error)
}

// HostCaller asks a host for partial scores: one call per host, all items
// of a request at once. A call-level error (deadline, connection, protocol)
// is a *CallError; per-item outcomes are in the answers, in order.
type HostCaller interface {
	Partial(ctx context.Context, host string, b PartialBatch) ([]PartialAnswer, error)
}

// PartialBatch is what the guest sends a host.
type PartialBatch struct {
	Model   string
	Version string
	Purpose string
	Items   []PartialItem
}

// PartialItem is one subject of a PartialBatch.
type PartialItem struct {
	Token   string // the consent token for this host
	HostRef string // HostRef(key, host, subject id): the host's entity key
}

// PartialAnswer is a host's answer for one item: a value, or a failure.
type PartialAnswer struct {
	Value  float64
	Cached bool
	// Failure, when set, says why there is no value. Refused failures
	// (consent rejected, budget exhausted under the refuse policy) fail the
	// guest's item; others degrade it.
	Failure *HostFailure
	Refused bool
}

// CallError is a failed call to a host as a whole.
type CallError struct {
	Code  string // CodeTimeout, CodeUnavailable, CodeProtocol, ...
	Cause error
}

func (e *CallError) Error() string { return "host call failed: " + e.Code + ": " + e.Cause.Error() }
func (e *CallError) Unwrap() error { return e.Cause }

// Fallback policies.
const (
	FallbackDegrade = "degrade"
	FallbackFail    = "fail"
)

// GuestOptions configure a Guest.
type GuestOptions struct {
	Party string
	// Model is the model id of requests that name none (DefaultModel).
	Model    string
	Models   Models
	Features FeatureReader
	// View is the feature view the guest's model features are read from.
	View string
	// EntityKey maps the normalised subject identifier to the guest's
	// feature-store entity key; nil: the identifier itself.
	EntityKey func(id string) string
	Consent   ConsentVerifier
	Issuer    TokenIssuer // nil: consent ids are refused
	Hosts     HostCaller
	// HostRef computes HostRef(key, host, id); nil when the node has no
	// subject_ref_key (then models with hosts cannot be scored).
	HostRef func(host, id string) string
	// Purpose is the default purpose (DefaultPurpose).
	Purpose string
	// DefaultRef is the model reference of requests that name none
	// ("stable" or "canary": the node's VERSION).
	DefaultRef string
	// Release is the node's VERSION, reported in every answer.
	Release string
	// Deadline bounds each host call (default 200 ms).
	Deadline time.Duration
	// Fallback: FallbackDegrade (default) or FallbackFail.
	Fallback string
	Scale    Scale
	// Reasons is how many guest reasons an answer lists (default
	// DefaultReasons).
	Reasons int
	// ModelRefresh is how long a resolved label is reused before asking
	// Models again (default 1 s): a promotion is served within it.
	ModelRefresh time.Duration
	Metrics      *Metrics
	Log          *slog.Logger
	Now          func() time.Time
}

// Guest scores subjects across parties.
type Guest struct {
	o      GuestOptions
	models *modelCache
}

// NewGuest returns a Guest.
func NewGuest(o GuestOptions) (*Guest, error) {
	if o.Models == nil || o.Features == nil || o.Consent == nil || o.Hosts == nil || o.View == "" {
		return nil, errors.New("serving: guest needs models, features, a view, a consent verifier and a host caller")
	}
	if o.Purpose == "" {
		o.Purpose = DefaultPurpose
	}
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if o.DefaultRef == "" {
		o.DefaultRef = "stable"
	}
	if o.Deadline <= 0 {
		o.Deadline = 200 * time.Millisecond
	}
	switch o.Fallback {
	case "":
		o.Fallback = FallbackDegrade
	case FallbackDegrade, FallbackFail:
	default:
		return nil, fmt.Errorf("serving: fallback %q: want degrade or fail", o.Fallback)
	}
	if o.Scale == (Scale{}) {
		o.Scale = DefaultScale()
	}
	if err := o.Scale.Validate(); err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	if o.Reasons <= 0 {
		o.Reasons = DefaultReasons
	}
	if o.ModelRefresh <= 0 {
		o.ModelRefresh = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Guest{o: o, models: newModelCache(o.Models, o.ModelRefresh, o.Now)}, nil
}

// Subject is one subject to score.
type Subject struct {
	// ID is the raw identifier; it is normalised, never logged, and never
	// leaves the guest.
	ID string
	// ConsentTokens are consent tokens, at most one per host of the model
	// (each names its host as audience).
	ConsentTokens []string
	// ConsentIDs are consents the guest's consent service issues tokens
	// from, as an alternative to tokens.
	ConsentIDs []string
	// Features are request-time values of guest model features, replacing
	// the feature store's.
	Features map[string]float64
}

// Request is a score request for one or more subjects.
type Request struct {
	Model   string // model id; "" is the configured model (DefaultModel)
	Ref     string // version, "stable", "canary"; "" is the node's VERSION
	Purpose string // "" is the configured purpose
	Items   []Subject
}

// Score is one subject's score.
type Score struct {
	Model                string        `json:"model"`
	Version              string        `json:"version"`
	Label                string        `json:"label,omitempty"` // stable or canary when the request asked by label
	Release              string        `json:"release"`         // the serving deployment's VERSION
	ProbabilityOfDefault float64       `json:"probability_of_default"`
	Score                int           `json:"score"`
	Logit                float64       `json:"logit"`
	Reasons              []Reason      `json:"reasons"`
	Degraded             bool          `json:"degraded"`
	HostFailures         []HostFailure `json:"host_failures,omitempty"`
	MissingFeatures      []string      `json:"missing_features,omitempty"`
}

// Result is one item of a batch: a score or an error (*Error).
type Result struct {
	Score *Score
	Err   error
}

// Score scores one subject. Errors are *Error values.
func (g *Guest) Score(ctx context.Context, model, ref, purpose string, s Subject) (*Score, error) {
	res, err := g.ScoreBatch(ctx, Request{Model: model, Ref: ref, Purpose: purpose, Items: []Subject{s}})
	if err != nil {
		return nil, err
	}
	return res[0].Score, res[0].Err
}

// item is the guest's working state for one subject.
type item struct {
	id      string
	tokens  map[string]string // host -> token
	hrefs   map[string]string // host -> href
	x       []float64
	missing []string
	partial float64
	err     error
	score   *Score
}

// ScoreBatch scores every item; each result holds a score or that item's
// error. The error return is for the request as a whole (bad model, too
// many items).
func (g *Guest) ScoreBatch(ctx context.Context, r Request) ([]Result, error) {
	start := g.o.Now()
	if r.Model == "" {
		r.Model = g.o.Model
	}
	if r.Purpose == "" {
		r.Purpose = g.o.Purpose
	}
	if err := consent.CheckPurposeID(r.Purpose); err != nil {
		return nil, newErr(ErrInvalid, "invalid_purpose", "purpose is not a valid purpose id")
	}
	if len(r.Items) == 0 || len(r.Items) > MaxBatch {
		return nil, newErr(ErrInvalid, "invalid_batch", "a request scores 1 to %d subjects", MaxBatch)
	}
	ref := r.Ref
	if ref == "" {
		ref = g.o.DefaultRef
	}
	m, err := g.models.guest(ctx, r.Model, ref)
	if err != nil {
		g.o.Metrics.score("failed")
		return nil, err
	}
	label := ""
	if ref == "stable" || ref == "canary" {
		label = ref
	}
	hosts := make(map[string]bool, len(m.model.Hosts))
	for _, h := range m.model.Hosts {
		hosts[h.Name] = true
	}

	items := make([]*item, len(r.Items))
	for i, s := range r.Items {
		items[i] = g.prepare(ctx, m.model, hosts, r.Purpose, s)
	}
	g.readFeatures(ctx, m, items, r.Items)
	answers := g.askHosts(ctx, m, r.Purpose, items)

	out := make([]Result, len(items))
	for i, it := range items {
		if it.err == nil {
			g.combine(m, label, it, answers, i)
		}
		out[i] = Result{Score: it.score, Err: it.err}
		switch {
		case it.err == nil && it.score.Degraded:
			g.o.Metrics.score("degraded")
		case it.err == nil:
			g.o.Metrics.score("scored")
		case errors.Is(it.err, ErrConsent) || errors.Is(it.err, ErrBudget):
			g.o.Metrics.score("refused")
		default:
			g.o.Metrics.score("failed")
		}
	}
	g.o.Metrics.observe(r.Model, m.version, g.o.Now().Sub(start).Seconds())
	return out, nil
}

// prepare normalises the identifier and checks the subject's consents.
func (g *Guest) prepare(ctx context.Context, m *hetero.GuestModel, hosts map[string]bool, purpose string, s Subject) *item {
	it := &item{}
	id, err := consent.NormalizeIdentifier(s.ID)
	if err != nil {
		it.err = newErr(ErrInvalid, "invalid_subject", "subject must be an identifier of 1 to 256 bytes")
		return it
	}
	it.id = id
	for name := range s.Features {
		if !containsString(m.Features, name) {
			it.err = newErr(ErrInvalid, "unknown_feature", "feature %q is not a feature of the model", consent.Clean(name))
			return it
		}
	}
	for _, v := range s.Features {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			it.err = newErr(ErrInvalid, "invalid_feature", "feature values must be finite numbers")
			return it
		}
	}
	if len(s.ConsentTokens)+len(s.ConsentIDs) == 0 {
		it.err = newErr(ErrInvalid, "consent_required", "consent_token or consent_id is required")
		return it
	}
	if len(s.ConsentTokens)+len(s.ConsentIDs) > MaxTokens {
		it.err = newErr(ErrInvalid, "too_many_tokens", "at most %d consent tokens or ids", MaxTokens)
		return it
	}
	tokens := append([]string(nil), s.ConsentTokens...)
	for _, cid := range s.ConsentIDs {
		if g.o.Issuer == nil {
			it.err = newErr(ErrInvalid, "consent_id_unsupported", "this node cannot issue consent tokens: send consent_token")
			return it
		}
		tok, err := g.o.Issuer.Issue(ctx, cid)
		if err != nil {
			it.err = asError(err, ErrUnavailable, "consent_unavailable", "consent token could not be issued")
			return it
		}
		tokens = append(tokens, tok)
	}
	it.tokens = make(map[string]string, len(tokens))
	it.hrefs = make(map[string]string, len(tokens))
	for _, tok := range tokens {
		if tok == "" || len(tok) > MaxTokenBytes {
			it.err = newErr(ErrInvalid, "invalid_token", "consent tokens are 1 to %d bytes", MaxTokenBytes)
			return it
		}
		v, err := g.o.Consent.Verify(ctx, tok, purpose)
		if err != nil {
			it.err = asError(err, ErrConsent, "consent_rejected", "consent token rejected")
			return it
		}
		if len(hosts) == 0 {
			continue // a guest-only model: the consent is checked, no host is asked
		}
		if !hosts[v.Audience] {
			it.err = newErr(ErrInvalid, "token_not_for_model", "a consent token is for party %q, which is not a host of the model", consent.Clean(v.Audience))
			return it
		}
		if _, dup := it.tokens[v.Audience]; dup {
			it.err = newErr(ErrInvalid, "duplicate_token", "two consent tokens for host %q", v.Audience)
			return it
		}
		if g.o.HostRef == nil {
			it.err = newErr(ErrUnavailable, "subject_ref_key_unset", "this node has no subject_ref_key: it cannot ask hosts")
			return it
		}
		href := g.o.HostRef(v.Audience, id)
		if v.HostRef == "" {
			it.err = newErr(ErrConsent, "subject_mismatch", "the consent token for %q carries no subject reference (href)", v.Audience)
			return it
		}
		if subtle.ConstantTimeCompare([]byte(v.HostRef), []byte(href)) != 1 {
			it.err = newErr(ErrConsent, "subject_mismatch", "the consent token for %q is not this subject's", v.Audience)
			return it
		}
		it.tokens[v.Audience] = tok
		it.hrefs[v.Audience] = href
	}
	return it
}

// readFeatures reads the guest's features of every item still valid, in
// one batch read, applies request-time values and computes the partials.
func (g *Guest) readFeatures(ctx context.Context, m *guestEntry, items []*item, subjects []Subject) {
	var keys []string
	var idx []int
	for i, it := range items {
		if it.err != nil {
			continue
		}
		key := it.id
		if g.o.EntityKey != nil {
			key = g.o.EntityKey(it.id)
		}
		keys = append(keys, key)
		idx = append(idx, i)
	}
	if len(keys) == 0 {
		return
	}
	vecs, err := g.o.Features.GetBatch(ctx, g.o.View, keys, m.model.Features)
	if err != nil {
		e := wrapErr(ErrUnavailable, "features_unavailable", err, "the guest's features could not be read")
		for _, i := range idx {
			items[i].err = e
		}
		return
	}
	for k, i := range idx {
		it, vec := items[i], vecs[k]
		x, err := vec.Float64s()
		if err != nil {
			it.err = wrapErr(ErrUnavailable, "features_invalid", err, "a model feature of view %q is not numeric", g.o.View)
			continue
		}
		for j, name := range vec.Features {
			if v, ok := subjects[i].Features[name]; ok {
				x[j] = v
				continue
			}
			if !vec.Present[j] {
				it.missing = append(it.missing, name)
			}
		}
		p, err := m.model.PartialScore(x)
		if err != nil {
			it.err = wrapErr(ErrUnavailable, "model_error", err, "the guest model could not score")
			continue
		}
		it.x, it.partial = x, p
	}
}

// hostAnswers holds each host's answers, by item index.
type hostAnswers map[string]map[int]PartialAnswer

// askHosts calls every host of the model in parallel, each with the items
// that have a token for it, under the deadline.
func (g *Guest) askHosts(ctx context.Context, m *guestEntry, purpose string, items []*item) hostAnswers {
	out := hostAnswers{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range m.model.Hosts {
		host := h.Name
		var batch PartialBatch
		var idx []int
		for i, it := range items {
			if it.err == nil && it.tokens[host] != "" {
				batch.Items = append(batch.Items, PartialItem{Token: it.tokens[host], HostRef: it.hrefs[host]})
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		batch.Model, batch.Version, batch.Purpose = m.model.ModelID, m.version, purpose
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, g.o.Deadline)
			defer cancel()
			t0 := time.Now()
			answers, err := g.o.Hosts.Partial(cctx, host, batch)
			g.o.Metrics.hostCall(host, time.Since(t0).Seconds())
			res := make(map[int]PartialAnswer, len(idx))
			for k, i := range idx {
				switch {
				case err != nil:
					code := CodeUnavailable
					var ce *CallError
					if errors.As(err, &ce) {
						code = ce.Code
					}
					if errors.Is(err, context.DeadlineExceeded) || cctx.Err() != nil {
						code = CodeTimeout
					}
					res[i] = PartialAnswer{Failure: &HostFailure{Host: host, Code: code, Message: failureMessage(code)}}
				case k >= len(answers):
					res[i] = PartialAnswer{Failure: &HostFailure{Host: host, Code: CodeProtocol, Message: failureMessage(CodeProtocol)}}
				default:
					res[i] = answers[k]
					if res[i].Failure != nil {
						res[i].Failure.Host = host
					}
				}
			}
			if err != nil {
				g.o.Log.WarnContext(ctx, "host partial call failed", "host", host, "items", len(idx), "err", err)
			}
			mu.Lock()
			out[host] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func failureMessage(code string) string {
	switch code {
	case CodeTimeout:
		return "the host did not answer within the deadline"
	case CodeUnavailable:
		return "the host could not be reached or failed"
	case CodeNoConsent:
		return "no consent token for this host"
	case CodeProtocol:
		return "the host's answer could not be read"
	case CodeBudgetExhausted:
		return "the subject's privacy budget at this host is exhausted"
	case CodeConsentRejected:
		return "the host rejected the consent token"
	case CodeModelNotFound:
		return "the host does not hold this model version"
	}
	return "the host refused"
}

// combine adds the hosts' partials to the guest's and builds the answer.
func (g *Guest) combine(m *guestEntry, label string, it *item, answers hostAnswers, i int) {
	logit := it.partial
	var failures []HostFailure
	hostReasons := make([]Reason, 0, len(m.model.Hosts))
	for _, h := range m.model.Hosts {
		a, ok := answers[h.Name][i]
		if !ok {
			a = PartialAnswer{Failure: &HostFailure{Host: h.Name, Code: CodeNoConsent, Message: failureMessage(CodeNoConsent)}}
		}
		if a.Failure != nil {
			g.o.Metrics.hostFailure(h.Name, a.Failure.Code)
			if a.Refused {
				kind := ErrConsent
				if a.Failure.Code == CodeBudgetExhausted {
					kind = ErrBudget
				}
				it.err = &Error{Kind: kind, Code: a.Failure.Code, Message: fmt.Sprintf("host %q: %s", h.Name, a.Failure.Message)}
				return
			}
			failures = append(failures, *a.Failure)
			continue
		}
		logit += a.Value
		hostReasons = append(hostReasons, Reason{Source: h.Name, Contribution: a.Value, Direction: direction(a.Value)})
	}
	if len(failures) > 0 && g.o.Fallback == FallbackFail {
		it.err = &Error{Kind: ErrUnavailable, Code: "host_unavailable",
			Message: fmt.Sprintf("host %q: %s (fallback policy: fail)", failures[0].Host, failures[0].Message)}
		return
	}
	reasons := guestReasons(m.model, g.o.View, it.x, g.o.Reasons)
	reasons = append(reasons, hostReasons...)
	it.score = &Score{
		Model: m.model.ModelID, Version: m.version, Label: label, Release: g.o.Release,
		ProbabilityOfDefault: lr.Logistic(logit),
		Score:                g.o.Scale.Score(logit),
		Logit:                logit,
		Reasons:              reasons,
		Degraded:             len(failures) > 0,
		HostFailures:         failures,
		MissingFeatures:      it.missing,
	}
}

// asError keeps an *Error as it is and wraps anything else.
func asError(err error, kind error, code, msg string) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return wrapErr(kind, code, err, "%s", msg)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
