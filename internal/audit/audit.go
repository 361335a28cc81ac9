package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidEvent is returned for an event the log refuses to record.
var ErrInvalidEvent = errors.New("invalid audit event")

// HashSize is the length of entry hashes (SHA-256).
const HashSize = sha256.Size

// Limits on one event: the log is for facts, not payloads.
const (
	MaxFieldLen = 1024 // bytes in any string, details keys and values included
	MaxDetails  = 32   // entries in Details
)

// domain separates this encoding from every other use of SHA-256 and
// signatures; a new encoding gets a new version.
const domain = "fedrisk-audit-v1"

// Event is one thing that happened.
type Event struct {
	At      time.Time         // set by Append if zero (UTC, microsecond precision)
	Actor   string            // who: "admin:alice", "party:partner", "system", "cli"
	Action  string            // e.g. "consent.grant", "token.issue", "key.rotate"
	Subject string            // a pseudonym, never a raw identifier ("" if none)
	Object  string            // e.g. a consent id, a kid
	Details map[string]string // small, no personal data
}

// Validate reports whether the log can record e unchanged: actor and action
// set, every string valid UTF-8 without NUL bytes and at most MaxFieldLen
// bytes, details non-empty keys and at most MaxDetails of them. Errors wrap
// ErrInvalidEvent and name the field, never its value.
func (e Event) Validate() error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("%w: actor and action are required", ErrInvalidEvent)
	}
	if len(e.Details) > MaxDetails {
		return fmt.Errorf("%w: more than %d details", ErrInvalidEvent, MaxDetails)
	}
	check := func(field, s string) error {
		switch {
		case len(s) > MaxFieldLen:
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidEvent, field, MaxFieldLen)
		case !utf8.ValidString(s):
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEvent, field)
		case strings.IndexByte(s, 0) >= 0:
			return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidEvent, field)
		}
		return nil
	}
	for _, f := range [...]struct{ name, v string }{
		{"actor", e.Actor}, {"action", e.Action}, {"subject", e.Subject}, {"object", e.Object},
	} {
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		if k == "" {
			return fmt.Errorf("%w: empty details key", ErrInvalidEvent)
		}
		if err := check("details key", k); err != nil {
			return err
		}
		if err := check("details value", e.Details[k]); err != nil {
			return err
		}
	}
	return nil
}

// Entry is an event as recorded: its place in the chain and its hashes.
type Entry struct {
	Seq int64
	Event
	PrevHash []byte // 32 bytes; all zero for seq 1
	Hash     []byte // SHA-256 over the canonical encoding (ComputeHash)
}

// ComputeHash returns SHA-256 over the canonical encoding of the entry:
// the domain "fedrisk-audit-v1" and the record type "entry", then seq and
// the time in Unix microseconds as 8-byte big-endian integers, actor,
// action, subject and object, the number of details followed by each key
// and value in key order, and PrevHash. Every string and byte field is
// preceded by its length as an 8-byte big-endian integer, so the encoding is
// unambiguous. Hash itself is not covered.
func (e Entry) ComputeHash() []byte {
	h := sha256.Sum256(e.canonical())
	return h[:]
}

func (e Entry) canonical() []byte {
	b := make([]byte, 0, 160+len(e.Actor)+len(e.Action)+len(e.Subject)+len(e.Object))
	b = appendString(b, domain)
	b = appendString(b, "entry")
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.At.UnixMicro()))
	b = appendString(b, e.Actor)
	b = appendString(b, e.Action)
	b = appendString(b, e.Subject)
	b = appendString(b, e.Object)
	b = binary.BigEndian.AppendUint64(b, uint64(len(e.Details)))
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		b = appendString(b, k)
		b = appendString(b, e.Details[k])
	}
	return appendString(b, string(e.PrevHash))
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// Checkpoint is a signed statement that entry Seq has hash Hash, made at At.
type Checkpoint struct {
	Seq       int64
	Hash      []byte
	At        time.Time
	KID       string // the signing key's id; not itself signed
	Signature []byte
}

// SignedBytes returns the canonical bytes a checkpoint's signature covers:
// the domain, the record type "checkpoint", seq, the length-prefixed hash
// and the time in Unix microseconds, encoded as in Entry.ComputeHash.
func (c Checkpoint) SignedBytes() []byte {
	b := make([]byte, 0, 96)
	b = appendString(b, domain)
	b = appendString(b, "checkpoint")
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = appendString(b, string(c.Hash))
	return binary.BigEndian.AppendUint64(b, uint64(c.At.UnixMicro()))
}

// Signer signs checkpoints with a key the database does not hold.
type Signer interface {
	SignCheckpoint(ctx context.Context, msg []byte) (kid string, sig []byte, err error)
}

// SignatureVerifier checks a checkpoint signature made by the key kid. Any
// error other than the context's counts as an invalid signature.
type SignatureVerifier interface {
	VerifyCheckpoint(ctx context.Context, kid string, msg, sig []byte) error
}
