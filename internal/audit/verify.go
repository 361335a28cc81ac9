package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
)

// Report is the outcome of Verify.
type Report struct {
	Entries     int64    // entries read
	Checkpoints int      // checkpoints checked
	Head        []byte   // hash of the last entry (nil for an empty log)
	FirstBad    *Problem // nil when the log is intact
}

// Problem is where, and why, a log fails verification. Seq is the first
// entry that is missing, altered or out of place; for a checkpoint whose
// signature or hash is wrong it is the checkpoint's seq.
type Problem struct {
	Seq    int64
	Reason string
}

// Error makes a Problem usable as an error, e.g. by an entry iterator that
// finds a row it cannot decode (see Verify).
func (p *Problem) Error() string { return fmt.Sprintf("audit entry %d: %s", p.Seq, p.Reason) }

// Verify walks the entries that next returns, in seq order, checks every
// link of the chain and every checkpoint, and reports the first problem by
// seq. Entries are read one at a time, so the log never has to fit in
// memory; checkpoints may come in any order.
//
// An entry is checked, in this order, for its seq (the previous one plus
// one, starting at 1), its PrevHash (the previous entry's Hash, or zeros)
// and its Hash (ComputeHash). A checkpoint must carry a valid signature (v),
// name an existing entry and carry that entry's hash; a checkpoint beyond
// the last entry means the log was truncated. At equal seq an entry problem
// is reported before a checkpoint problem.
//
// next returns ok == false after the last entry. If it returns an error
// that is a *Problem (for a row it cannot decode), Verify records the
// problem, uses the entry it returned (if ok) to continue the chain, and
// goes on; any other error ends Verify with that error. Problems are never
// errors: the error is for failures to read or to verify (a nil v with
// checkpoints to check, a cancelled ctx).
func Verify(ctx context.Context, next func() (Entry, bool, error), checkpoints []Checkpoint, v SignatureVerifier) (Report, error) {
	if v == nil && len(checkpoints) > 0 {
		return Report{}, errors.New("verify audit log: checkpoints given without a signature verifier")
	}
	cps := slices.SortedStableFunc(slices.Values(checkpoints), func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	r := Report{Checkpoints: len(cps)}
	found := func(seq int64, format string, args ...any) {
		if r.FirstBad == nil || seq < r.FirstBad.Seq {
			r.FirstBad = &Problem{Seq: seq, Reason: fmt.Sprintf(format, args...)}
		}
	}
	// signed reports whether c's signature is valid, recording it if not.
	signed := func(c Checkpoint) (bool, error) {
		err := v.VerifyCheckpoint(ctx, c.KID, c.SignedBytes(), c.Signature)
		if err != nil && ctx.Err() != nil {
			return false, fmt.Errorf("verify audit log: %w", ctx.Err())
		}
		if err != nil {
			found(c.Seq, "checkpoint at seq %d: signature invalid", c.Seq)
		}
		return err == nil, nil
	}

	expected, prev := int64(1), make([]byte, HashSize)
	for {
		if r.Entries%4096 == 0 && ctx.Err() != nil {
			return Report{}, fmt.Errorf("verify audit log: %w", ctx.Err())
		}
		e, ok, err := next()
		var p *Problem
		switch {
		case errors.As(err, &p):
			found(p.Seq, "%s", p.Reason)
		case err != nil:
			return Report{}, fmt.Errorf("verify audit log: read entries: %w", err)
		}
		if !ok {
			break
		}
		r.Entries++
		if p == nil {
			switch {
			case e.Seq > expected:
				found(expected, "sequence gap: expected %d, found %d (entry removed)", expected, e.Seq)
			case e.Seq < expected:
				found(expected, "sequence out of order: expected %d, found %d (entry duplicated or reordered)", expected, e.Seq)
			case !bytes.Equal(e.PrevHash, prev) && e.Seq == 1:
				found(e.Seq, "prev_hash of the first entry is not zero (entries before it removed)")
			case !bytes.Equal(e.PrevHash, prev):
				found(e.Seq, "prev_hash does not match entry %d (entry removed or reordered)", e.Seq-1)
			case !bytes.Equal(e.ComputeHash(), e.Hash):
				found(e.Seq, "hash mismatch (entry altered)")
			}
		}
		for len(cps) > 0 && cps[0].Seq <= e.Seq {
			c := cps[0]
			cps = cps[1:]
			if valid, err := signed(c); err != nil {
				return Report{}, err
			} else if !valid {
				continue
			}
			switch {
			case c.Seq != e.Seq:
				found(c.Seq, "checkpoint at seq %d: no entry with that seq", c.Seq)
			case !bytes.Equal(c.Hash, e.Hash):
				found(c.Seq, "checkpoint at seq %d: hash differs from the chain (entries altered or truncated)", c.Seq)
			}
		}
		// Carry on from this entry, so that one problem is reported once.
		expected, prev, r.Head = e.Seq+1, e.Hash, e.Hash
	}
	last := expected - 1
	for _, c := range cps {
		if valid, err := signed(c); err != nil {
			return Report{}, err
		} else if valid {
			found(last+1, "checkpoint at seq %d is beyond the last entry %d (log truncated)", c.Seq, last)
		}
	}
	return r, nil
}
