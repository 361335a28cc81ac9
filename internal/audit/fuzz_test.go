package audit_test

import (
	"bytes"
	"context"
	"maps"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
)

// FuzzCanonicalEncoding checks that the encoding is injective: two entries
// hash alike exactly when every field is equal, however the fuzzer moves
// bytes between fields.
func FuzzCanonicalEncoding(f *testing.F) {
	f.Add("ab", "c", "", "", "k", "v", "a", "bc", "", "", "k", "v")
	f.Add("a", "b", "c", "d", "ke", "y", "a", "b", "c", "d", "k", "ey")
	f.Add("", "", "", "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, a1, a2, a3, a4, ak, av, b1, b2, b3, b4, bk, bv string) {
		entry := func(actor, action, subject, object, k, v string) audit.Entry {
			e := audit.Entry{Seq: 1, PrevHash: make([]byte, 32), Event: audit.Event{
				At: t0, Actor: actor, Action: action, Subject: subject, Object: object,
			}}
			if k != "" {
				e.Details = map[string]string{k: v}
			}
			return e
		}
		a, b := entry(a1, a2, a3, a4, ak, av), entry(b1, b2, b3, b4, bk, bv)
		same := a1 == b1 && a2 == b2 && a3 == b3 && a4 == b4 && maps.Equal(a.Details, b.Details)
		if got := bytes.Equal(a.ComputeHash(), b.ComputeHash()); got != same {
			t.Fatalf("fields equal %v but hashes equal %v: %q vs %q", same, got, a.Event, b.Event)
		}
	})
}

// FuzzVerify builds a chain from fuzzed events, checks that it verifies,
// then changes one field of one entry: Verify must never panic and must
// name that entry as the first bad one.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(5), "admin:alice", "consent.grant", "ps_1", "c-1", "purpose", "credit", int64(1700000000000000), uint8(3), uint8(0), byte('x'))
	f.Add(uint8(1), "", "", "", "", "", "", int64(-1), uint8(0), uint8(7), byte(0))
	f.Add(uint8(16), "a\x00", "\xff", "", "o", "k", "", int64(0), uint8(200), uint8(5), byte(0xff))
	f.Fuzz(func(t *testing.T, n uint8, actor, action, subject, object, k, v string, at int64, which, field uint8, b byte) {
		s := newSigner(t, "k1")
		n = n%16 + 1
		es := make([]audit.Entry, n)
		prev := make([]byte, audit.HashSize)
		for i := range es {
			e := audit.Entry{Seq: int64(i + 1), PrevHash: prev, Event: audit.Event{
				At: time.UnixMicro(at + int64(i)), Actor: actor, Action: action, Subject: subject, Object: object,
				Details: map[string]string{k: v + string(rune('a'+i))},
			}}
			e.Hash = e.ComputeHash()
			es[i], prev = e, e.Hash
		}
		cps := []audit.Checkpoint{checkpoint(t, s, es[n-1])}
		r, err := audit.Verify(context.Background(), iterate(es), cps, s)
		if err != nil || r.FirstBad != nil || r.Entries != int64(n) {
			t.Fatalf("intact chain: %+v, %v", r, err)
		}

		i := int(which) % int(n)
		e := &es[i]
		e.Details = maps.Clone(e.Details)
		switch field % 10 {
		case 0:
			e.Actor += string(b)
		case 1:
			e.Action = string(b) + e.Action
		case 2:
			e.Subject += string(b)
		case 3:
			e.Object += string(b)
		case 4:
			e.Details[k] += string(b)
		case 5:
			e.Details[k+string(b)] = ""
		case 6:
			e.At = e.At.Add(time.Microsecond)
		case 7:
			e.PrevHash = bytes.Clone(e.PrevHash)
			e.PrevHash[b%32] ^= 1
		case 8:
			e.Hash = bytes.Clone(e.Hash)
			e.Hash[b%32] ^= 1
		case 9:
			e.Seq++
		}
		r, err = audit.Verify(context.Background(), iterate(es), cps, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.FirstBad == nil || r.FirstBad.Seq != int64(i+1) {
			t.Fatalf("mutation %d of entry %d: FirstBad = %v", field%10, i+1, r.FirstBad)
		}
	})
}
