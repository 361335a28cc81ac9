package hetero

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Protocol names this protocol and version in Hello.
const Protocol = "fedrisk-hetero-lr/1"

// Evaluation sets of EvalScores (the message's batch field).
const (
	setValidation = 0
	setTest       = 1
)

// hello is the guest's proposal to one host.
type hello struct {
	Protocol  string        `json:"protocol"`
	Session   string        `json:"session"`
	ModelID   string        `json:"model_id"`
	Version   string        `json:"version"`
	HostIndex int           `json:"host_index"`
	Hosts     int           `json:"hosts"`
	Params    Params        `json:"params"`
	Budget    budget        `json:"budget"`
	Train     lr.Config     `json:"train"`
	Split     dataset.Split `json:"split"`
	Rows      int           `json:"rows"`
	IDDigest  string        `json:"id_digest"`
	// GuestColumns is the number of guest columns (features and the
	// intercept) host 0 computes the guest's gradient term for.
	GuestColumns int `json:"guest_columns"`
	// StartEpoch is the first epoch of this session: 0, or the epoch after
	// the checkpoint both parties resume from.
	StartEpoch int `json:"start_epoch,omitempty"`
}

// helloReply is a host's answer.
type helloReply struct {
	Protocol   string `json:"protocol"`
	Session    string `json:"session"`
	Features   int    `json:"features"`
	Train      int    `json:"train_rows"`
	Validation int    `json:"validation_rows"`
	Test       int    `json:"test_rows"`
	IDDigest   string `json:"id_digest"`
	// SeedKey is the host's X25519 public key for this session (several
	// hosts only).
	SeedKey []byte `json:"seed_key,omitempty"`
}

// finish tells the hosts which epoch's weights make the model.
type finish struct {
	BestEpoch int `json:"best_epoch"`
	Epochs    int `json:"epochs"`
}

// finishReply carries the digest of the host's half, for the guest's card.
type finishReply struct {
	ModelDigest string `json:"model_digest"`
	Features    int    `json:"features"`
}

// epochEnd flags.
const (
	flagKeep = 1 << 0
	flagStop = 1 << 1
)

// idDigest hashes the aligned identifiers, so both parties can check that
// their rows line up before training. Both already hold these identifiers
// (the PSI result), so the digest discloses nothing new.
func idDigest(ids []string) string {
	h := sha256.New()
	h.Write([]byte("fedrisk-hetero ids v1\x00"))
	var n [8]byte
	for _, id := range ids {
		l := len(id)
		for i := range n {
			n[i] = byte(l >> (8 * (7 - i)))
		}
		h.Write(n[:])
		h.Write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// prepared is one party's standardised, split data.
type prepared struct {
	parts dataset.Parts
	std   dataset.Standardisation
}

func prepare(t *dataset.Table, split dataset.Split, boundBits int) (prepared, error) {
	if err := split.Validate(); err != nil {
		return prepared{}, err
	}
	parts, std := dataset.Standardise(split.Apply(t))
	if parts.Train.Len() == 0 {
		return prepared{}, errors.New("the split leaves no training rows")
	}
	lim := math.Exp2(float64(boundBits))
	for _, p := range []*dataset.Table{parts.Train, parts.Validation, parts.Test} {
		for _, v := range p.X.Data {
			if math.Abs(v) >= lim {
				return prepared{}, fmt.Errorf("%w: a standardised feature reaches %.0f standard deviations (bound 2^%d); winsorise the outliers or raise FeatureBoundBits", ErrBound, math.Abs(v), boundBits)
			}
		}
	}
	return prepared{parts: parts, std: std}, nil
}

// sendAbort tells the peer that we stop, best effort. The reason is the
// error's category only, never its details (which may describe local data).
func sendAbort(ctx context.Context, t Transport, err error) {
	reason := "internal error"
	for _, e := range []error{ErrProtocol, ErrMalformed, ErrMismatch, ErrParams, ErrBound, ErrAborted, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			reason = e.Error()
			break
		}
	}
	_ = t.Send(ctx, Message{Type: MsgAbort, Payload: []byte(reason)})
}
