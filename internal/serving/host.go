package serving

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/privacy"
)

// Releaser releases partial scores under the privacy budget
// (*privacy.Releaser).
type Releaser interface {
	Release(ctx context.Context, req privacy.Request) (privacy.Release, error)
}

// HostOptions configure a Host.
type HostOptions struct {
	Party    string
	Models   Models
	Features FeatureReader
	// View is the feature view the host's model features are read from,
	// keyed by href.
	View string
	// Verifier returns the consent verifier for tokens of a requesting
	// (guest) party; false refuses the party.
	Verifier func(party string) (ConsentVerifier, bool)
	Releaser Releaser
	// Purposes are the purposes this host answers for (default
	// DefaultPurpose).
	Purposes []string
	// Charged, if set, is called after a release was charged or refused
	// for lack of budget (to refresh the budget gauges).
	Charged func()
	// ModelRefresh is how long a host half is reused before asking Models
	// again (default 1 s).
	ModelRefresh time.Duration
	Metrics      *Metrics
	Log          *slog.Logger
	Now          func() time.Time
}

// Host answers partial-score requests.
type Host struct {
	o      HostOptions
	models *modelCache
}

// NewHost returns a Host.
func NewHost(o HostOptions) (*Host, error) {
	if o.Models == nil || o.Features == nil || o.Verifier == nil || o.Releaser == nil || o.View == "" {
		return nil, errors.New("serving: host needs models, features, a view, consent verifiers and a releaser")
	}
	if len(o.Purposes) == 0 {
		o.Purposes = []string{DefaultPurpose}
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
	return &Host{o: o, models: newModelCache(o.Models, o.ModelRefresh, o.Now)}, nil
}

// Partial answers a guest party's partial-score batch: one answer per
// item, in order. The error return is for the batch as a whole (unknown
// model or purpose, a party without a verifier). No feature is read for
// an item whose token does not verify or does not match its href.
func (h *Host) Partial(ctx context.Context, party string, b PartialBatch) ([]PartialAnswer, error) {
	start := h.o.Now()
	if len(b.Items) == 0 || len(b.Items) > MaxBatch {
		return nil, newErr(ErrInvalid, "invalid_batch", "a request carries 1 to %d items", MaxBatch)
	}
	if !containsString(h.o.Purposes, b.Purpose) {
		return nil, newErr(ErrForbidden, "purpose_not_served", "this host does not answer for purpose %q", consent.Clean(b.Purpose))
	}
	verifier, ok := h.o.Verifier(party)
	if !ok {
		return nil, newErr(ErrForbidden, "not_a_guest", "party %q is not a guest of this host", consent.Clean(party))
	}
	m, err := h.models.host(ctx, b.Model, b.Version)
	if err != nil {
		return nil, err
	}

	out := make([]PartialAnswer, len(b.Items))
	subjects := make([]string, len(b.Items))
	var keys []string
	var idx []int
	for i, it := range b.Items {
		if err := features.ValidateEntity(it.HostRef); err != nil || it.Token == "" || len(it.Token) > MaxTokenBytes {
			out[i] = refused(CodeRefused, "the item needs a consent token and a valid href")
			continue
		}
		v, err := verifier.Verify(ctx, it.Token, b.Purpose)
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				out[i] = PartialAnswer{Failure: &HostFailure{Code: CodeUnavailable, Message: "the guest's consent service could not be reached"}}
			} else {
				out[i] = refused(CodeConsentRejected, "consent token rejected")
			}
			h.o.Log.InfoContext(ctx, "partial score refused: consent", "peer", party, "err", err)
			continue
		}
		if v.HostRef == "" || subtle.ConstantTimeCompare([]byte(v.HostRef), []byte(it.HostRef)) != 1 {
			out[i] = refused(CodeConsentRejected, "the consent token is not for this subject reference")
			continue
		}
		// The budget and the release cache are kept per href — this host's
		// own key for the subject, which the token was checked to carry —
		// not per the token's sub, which the guest signs and could vary to
		// buy fresh budget and fresh noise for the same person.
		subjects[i] = it.HostRef
		keys = append(keys, it.HostRef)
		idx = append(idx, i)
	}
	if len(keys) > 0 {
		vecs, err := h.o.Features.GetBatch(ctx, h.o.View, keys, m.Features)
		if err != nil {
			h.o.Log.ErrorContext(ctx, "host features unavailable", "view", h.o.View, "err", err)
			for _, i := range idx {
				out[i] = PartialAnswer{Failure: &HostFailure{Code: CodeUnavailable, Message: "the host's features could not be read"}}
			}
			idx = nil
		}
		for k, i := range idx {
			out[i] = h.release(ctx, party, b, m.ModelID, m.Version, m.PartialScore, subjects[i], vecs[k])
		}
	}
	for _, a := range out {
		switch {
		case a.Failure == nil && a.Cached:
			h.o.Metrics.partial("cached")
		case a.Failure == nil:
			h.o.Metrics.partial("released")
		case a.Refused:
			h.o.Metrics.partial("refused")
		case a.Failure.Code == CodeBudgetExhausted:
			h.o.Metrics.partial("withheld")
		default:
			h.o.Metrics.partial("failed")
		}
	}
	h.o.Metrics.observe(b.Model, b.Version, h.o.Now().Sub(start).Seconds())
	return out, nil
}

func refused(code, msg string) PartialAnswer {
	return PartialAnswer{Failure: &HostFailure{Code: code, Message: msg}, Refused: true}
}

// release computes one partial score and releases it.
func (h *Host) release(ctx context.Context, party string, b PartialBatch, modelID, version string, score func([]float64) (float64, error), subject string, vec features.Vector) PartialAnswer {
	x, err := vec.Float64s()
	if err == nil {
		var s float64
		if s, err = score(x); err == nil {
			var rel privacy.Release
			rel, err = h.o.Releaser.Release(ctx, privacy.Request{
				Party: party, Purpose: b.Purpose, Subject: subject,
				ModelVersion: modelID + "@" + version, Snapshot: Snapshot(vec), Score: s,
			})
			if err == nil {
				if rel.Charge.ID != "" && h.o.Charged != nil {
					h.o.Charged()
				}
				return PartialAnswer{Value: rel.Value, Cached: rel.Cached}
			}
		}
	}
	var ex *privacy.ExhaustedError
	switch {
	case errors.As(err, &ex):
		if h.o.Charged != nil {
			h.o.Charged()
		}
		a := PartialAnswer{Failure: &HostFailure{Code: CodeBudgetExhausted, Message: failureMessage(CodeBudgetExhausted)}}
		a.Refused = ex.OnExhausted != privacy.Degrade
		return a
	case errors.Is(err, privacy.ErrNoPolicy):
		h.o.Log.ErrorContext(ctx, "no privacy budget policy for the purpose: releases fail closed", "purpose", b.Purpose)
		return PartialAnswer{Failure: &HostFailure{Code: CodeUnavailable, Message: "the host has no privacy budget policy for the purpose"}}
	default:
		h.o.Log.ErrorContext(ctx, "partial score failed", "err", err)
		return PartialAnswer{Failure: &HostFailure{Code: CodeUnavailable, Message: "the host could not compute the partial score"}}
	}
}

// Snapshot identifies the feature values a partial score was computed
// from: a SHA-256 over the features' names, values and event times. The
// same values give the same snapshot, so a repeated request is answered
// with the released value; a reload with new values gives a new one.
func Snapshot(v features.Vector) string {
	hash := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		hash.Write(n[:])
		hash.Write([]byte(s))
	}
	for j, f := range v.Features {
		put(f)
		put(v.Values[j].String())
		var t int64
		if j < len(v.EventTimes) && !v.EventTimes[j].IsZero() {
			t = v.EventTimes[j].UnixMicro()
		}
		binary.BigEndian.PutUint64(n[:], uint64(t))
		hash.Write(n[:])
		if v.Present[j] {
			hash.Write([]byte{1})
		} else {
			hash.Write([]byte{0})
		}
	}
	return hex.EncodeToString(hash.Sum(nil)[:16])
}
