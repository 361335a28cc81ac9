package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
)

// edSigner signs and verifies checkpoints with one Ed25519 key.
type edSigner struct {
	kid  string
	priv ed25519.PrivateKey
}

func newSigner(t testing.TB, kid string) *edSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &edSigner{kid: kid, priv: priv}
}

func (s *edSigner) SignCheckpoint(_ context.Context, msg []byte) (string, []byte, error) {
	return s.kid, ed25519.Sign(s.priv, msg), nil
}

func (s *edSigner) VerifyCheckpoint(_ context.Context, kid string, msg, sig []byte) error {
	if kid != s.kid || !ed25519.Verify(s.priv.Public().(ed25519.PublicKey), msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// chain builds a valid chain of n entries in memory, as the log would.
func chain(n int) []audit.Entry {
	out := make([]audit.Entry, n)
	prev := make([]byte, audit.HashSize)
	for i := range out {
		e := audit.Entry{Seq: int64(i + 1), PrevHash: prev, Event: audit.Event{
			At: t0.Add(time.Duration(i) * time.Second), Actor: "admin:alice", Action: "consent.grant",
			Subject: fmt.Sprintf("ps_%03d", i%7), Object: fmt.Sprintf("c-%d", i),
			Details: map[string]string{"purpose": "credit_risk_assessment", "host": "bank-b"},
		}}
		e.Hash = e.ComputeHash()
		out[i], prev = e, e.Hash
	}
	return out
}

func checkpoint(t testing.TB, s audit.Signer, e audit.Entry) audit.Checkpoint {
	t.Helper()
	c := audit.Checkpoint{Seq: e.Seq, Hash: e.Hash, At: e.At.Add(time.Second)}
	var err error
	if c.KID, c.Signature, err = s.SignCheckpoint(context.Background(), c.SignedBytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

func iterate(entries []audit.Entry) func() (audit.Entry, bool, error) {
	i := 0
	return func() (audit.Entry, bool, error) {
		if i == len(entries) {
			return audit.Entry{}, false, nil
		}
		i++
		return entries[i-1], true, nil
	}
}

func TestComputeHashCanonical(t *testing.T) {
	base := audit.Entry{Seq: 7, PrevHash: bytes.Repeat([]byte{1}, 32), Event: audit.Event{
		At: t0, Actor: "ab", Action: "c", Subject: "de", Object: "f",
		Details: map[string]string{"k": "v", "x": "yz"},
	}}
	with := func(f func(e *audit.Entry)) audit.Entry {
		e := base
		e.Details = map[string]string{"k": "v", "x": "yz"}
		f(&e)
		return e
	}
	cases := []struct {
		name string
		e    audit.Entry
	}{
		{"actor into action", with(func(e *audit.Entry) { e.Actor, e.Action = "a", "bc" })},
		{"action into subject", with(func(e *audit.Entry) { e.Action, e.Subject = "cd", "e" })},
		{"subject into object", with(func(e *audit.Entry) { e.Subject, e.Object = "d", "ef" })},
		{"object into details", with(func(e *audit.Entry) { e.Object = ""; e.Details["fk"] = "v"; delete(e.Details, "k") })},
		{"details key into value", with(func(e *audit.Entry) { delete(e.Details, "x"); e.Details["xy"] = "z" })},
		{"details value into next key", with(func(e *audit.Entry) { e.Details["k"] = "vx"; delete(e.Details, "x"); e.Details[""] = "yz" })},
		{"two details as one", with(func(e *audit.Entry) { e.Details = map[string]string{"k": "v\x00x\x00yz"} })},
		{"details swapped", with(func(e *audit.Entry) { e.Details = map[string]string{"k": "yz", "x": "v"} })},
		{"empty details value vs none", with(func(e *audit.Entry) { e.Details["z"] = "" })},
		{"seq", with(func(e *audit.Entry) { e.Seq = 8 })},
		{"time by a microsecond", with(func(e *audit.Entry) { e.At = t0.Add(time.Microsecond) })},
		{"prev hash", with(func(e *audit.Entry) { e.PrevHash = bytes.Repeat([]byte{2}, 32) })},
		{"prev hash shorter", with(func(e *audit.Entry) { e.PrevHash = e.PrevHash[:31] })},
	}
	seen := map[string]string{hex.EncodeToString(base.ComputeHash()): "base"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := hex.EncodeToString(tc.e.ComputeHash())
			if other, dup := seen[h]; dup {
				t.Errorf("same hash as %q", other)
			}
			seen[h] = tc.name
		})
	}

	t.Run("deterministic", func(t *testing.T) {
		same := with(func(e *audit.Entry) {
			e.Details = map[string]string{"x": "yz"}
			e.Details["k"] = "v"
			e.At = t0.In(time.FixedZone("CET", 3600)).Add(999 * time.Nanosecond) // same microsecond
			e.Hash = []byte("ignored")
		})
		if !bytes.Equal(same.ComputeHash(), base.ComputeHash()) {
			t.Error("hash depends on map order, zone, sub-microsecond time or the Hash field")
		}
		a, b := base, base
		a.Details, b.Details = nil, map[string]string{}
		if !bytes.Equal(a.ComputeHash(), b.ComputeHash()) {
			t.Error("nil and empty details hash differently")
		}
	})
}

// TestComputeHashKnownAnswer pins the encoding: an auditor's independent
// implementation must produce this hash. Changing it is a new format version.
func TestComputeHashKnownAnswer(t *testing.T) {
	e := audit.Entry{Seq: 1, PrevHash: make([]byte, 32), Event: audit.Event{
		At: time.UnixMicro(1700000000123456), Actor: "system", Action: "key.rotate",
		Object: "kid-1", Details: map[string]string{"alg": "RS256"},
	}}
	const want = "37adfa25a21b94dbabfaebf990285faff9ba2b8ef9f02926cd69cc2e36f036cc"
	if got := hex.EncodeToString(e.ComputeHash()); got != want {
		t.Errorf("hash = %s, want %s", got, want)
	}
	c := audit.Checkpoint{Seq: 1, Hash: []byte{0xab}, At: time.UnixMicro(2)}
	wantSigned := "0000000000000010" + hex.EncodeToString([]byte("fedrisk-audit-v1")) +
		"000000000000000a" + hex.EncodeToString([]byte("checkpoint")) +
		"0000000000000001" + "0000000000000001ab" + "0000000000000002"
	if got := hex.EncodeToString(c.SignedBytes()); got != wantSigned {
		t.Errorf("signed bytes = %s, want %s", got, wantSigned)
	}
}

func TestValidate(t *testing.T) {
	ok := audit.Event{Actor: "cli", Action: "purpose.create", Details: map[string]string{"name": "credit"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", audit.MaxFieldLen+1)
	many := map[string]string{}
	for i := range audit.MaxDetails + 1 {
		many[fmt.Sprint(i)] = ""
	}
	cases := map[string]func(e *audit.Event){
		"no actor":         func(e *audit.Event) { e.Actor = "" },
		"no action":        func(e *audit.Event) { e.Action = "" },
		"long subject":     func(e *audit.Event) { e.Subject = long },
		"invalid UTF-8":    func(e *audit.Event) { e.Object = "\xff" },
		"NUL":              func(e *audit.Event) { e.Actor = "a\x00b" },
		"empty key":        func(e *audit.Event) { e.Details = map[string]string{"": "v"} },
		"bad details key":  func(e *audit.Event) { e.Details = map[string]string{"\xc3": "v"} },
		"long detail":      func(e *audit.Event) { e.Details = map[string]string{"k": long} },
		"too many details": func(e *audit.Event) { e.Details = many },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := ok
			mutate(&e)
			err := e.Validate()
			if !errors.Is(err, audit.ErrInvalidEvent) {
				t.Fatalf("Validate = %v, want ErrInvalidEvent", err)
			}
			if strings.Contains(err.Error(), "\xff") || strings.Contains(err.Error(), long) {
				t.Errorf("error carries the value: %q", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	s := newSigner(t, "k1")
	type setup struct {
		entries []audit.Entry
		cps     []audit.Checkpoint
	}
	fresh := func() *setup {
		es := chain(60)
		return &setup{entries: es, cps: []audit.Checkpoint{checkpoint(t, s, es[49]), checkpoint(t, s, es[19])}}
	}
	cases := []struct {
		name   string
		tamper func(s *setup)
		seq    int64
		reason string
	}{
		{"intact", func(*setup) {}, 0, ""},
		{"field altered", func(x *setup) { x.entries[41].Object = "c-x" }, 42, "hash mismatch (entry altered)"},
		{"details altered", func(x *setup) { x.entries[41].Details = map[string]string{"purpose": "marketing"} }, 42, "hash mismatch (entry altered)"},
		{"hash altered", func(x *setup) { x.entries[41].Hash = bytes.Repeat([]byte{9}, 32) }, 42, "hash mismatch (entry altered)"},
		{"altered and rehashed", func(x *setup) {
			x.entries[41].Actor = "admin:mallory"
			x.entries[41].Hash = x.entries[41].ComputeHash()
		}, 43, "prev_hash does not match entry 42"},
		{"removed", func(x *setup) { x.entries = append(x.entries[:41], x.entries[42:]...) }, 42, "sequence gap: expected 42, found 43 (entry removed)"},
		{"first removed", func(x *setup) { x.entries = x.entries[1:] }, 1, "sequence gap: expected 1, found 2"},
		{"reordered", func(x *setup) {
			a, b := x.entries[41], x.entries[42]
			a.Seq, b.Seq = b.Seq, a.Seq
			x.entries[41], x.entries[42] = b, a
		}, 42, "prev_hash does not match entry 41 (entry removed or reordered)"},
		{"truncated past a checkpoint", func(x *setup) { x.entries = x.entries[:45] }, 46, "checkpoint at seq 50 is beyond the last entry 45 (log truncated)"},
		{"all entries removed", func(x *setup) { x.entries = nil }, 1, "checkpoint at seq 20 is beyond the last entry 0 (log truncated)"},
		{"checkpoint signature forged", func(x *setup) { x.cps[0].Signature[3] ^= 1 }, 50, "checkpoint at seq 50: signature invalid"},
		{"checkpoint hash altered", func(x *setup) { x.cps[0].Hash = x.entries[48].Hash }, 50, "checkpoint at seq 50: signature invalid"},
		{"checkpoint kid changed", func(x *setup) { x.cps[1].KID = "k2" }, 20, "checkpoint at seq 20: signature invalid"},
		{"chain rewritten under a checkpoint", func(x *setup) {
			x.entries[41].Actor = "admin:mallory"
			rehash(x.entries, 41)
		}, 50, "checkpoint at seq 50: hash differs from the chain (entries altered or truncated)"},
		{"entry problem first at equal seq", func(x *setup) {
			x.entries[49].Object = "c-x"
			x.cps[0].Signature[0] ^= 1
		}, 50, "hash mismatch"},
		{"earlier entry before later checkpoint", func(x *setup) {
			x.cps[0].Signature[0] ^= 1
			x.entries[29].Object = "c-x"
		}, 30, "hash mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := fresh()
			tc.tamper(x)
			r, err := audit.Verify(ctx, iterate(x.entries), x.cps, s)
			if err != nil {
				t.Fatal(err)
			}
			if r.Entries != int64(len(x.entries)) || r.Checkpoints != 2 {
				t.Errorf("read %d entries, %d checkpoints", r.Entries, r.Checkpoints)
			}
			if tc.seq == 0 {
				if r.FirstBad != nil {
					t.Fatalf("intact log reported %v", r.FirstBad)
				}
				if !bytes.Equal(r.Head, x.entries[59].Hash) {
					t.Error("head is not the last hash")
				}
				return
			}
			if r.FirstBad == nil {
				t.Fatal("tampering not detected")
			}
			if r.FirstBad.Seq != tc.seq || !strings.Contains(r.FirstBad.Reason, tc.reason) {
				t.Errorf("FirstBad = %d %q, want %d %q", r.FirstBad.Seq, r.FirstBad.Reason, tc.seq, tc.reason)
			}
		})
	}
}

// rehash recomputes every hash from entries[from] on, as an attacker
// rewriting the chain would.
func rehash(entries []audit.Entry, from int) {
	for i := from; i < len(entries); i++ {
		if i > 0 {
			entries[i].PrevHash = entries[i-1].Hash
		}
		entries[i].Hash = entries[i].ComputeHash()
	}
}

func TestVerifyLimits(t *testing.T) {
	ctx := context.Background()
	s := newSigner(t, "k1")
	es := chain(30)
	cp := checkpoint(t, s, es[19])

	t.Run("rewrite after the last checkpoint is not detected", func(t *testing.T) {
		x := append([]audit.Entry(nil), es...)
		x[24].Actor = "admin:mallory"
		rehash(x, 24)
		r, err := audit.Verify(ctx, iterate(x[:27]), []audit.Checkpoint{cp}, s)
		if err != nil || r.FirstBad != nil {
			t.Fatalf("got %v, %v: the package doc promises this is undetectable", r.FirstBad, err)
		}
	})
	t.Run("a kept checkpoint catches it later", func(t *testing.T) {
		x := append([]audit.Entry(nil), es...)
		kept := checkpoint(t, s, x[26])
		x[24].Actor = "admin:mallory"
		rehash(x, 24)
		r, err := audit.Verify(ctx, iterate(x), []audit.Checkpoint{cp, kept}, s)
		if err != nil || r.FirstBad == nil || r.FirstBad.Seq != 27 {
			t.Fatalf("got %v, %v, want a problem at seq 27", r.FirstBad, err)
		}
	})
}

func TestVerifyErrors(t *testing.T) {
	s := newSigner(t, "k1")
	es := chain(5)
	cps := []audit.Checkpoint{checkpoint(t, s, es[2])}

	if _, err := audit.Verify(context.Background(), iterate(es), cps, nil); err == nil {
		t.Error("checkpoints without a verifier accepted")
	}
	if r, err := audit.Verify(context.Background(), iterate(es), nil, nil); err != nil || r.FirstBad != nil {
		t.Errorf("no checkpoints, no verifier: %v, %v", r.FirstBad, err)
	}
	if r, err := audit.Verify(context.Background(), iterate(nil), nil, nil); err != nil || r.FirstBad != nil || r.Head != nil || r.Entries != 0 {
		t.Errorf("empty log: %+v, %v", r, err)
	}
	boom := errors.New("disk on fire")
	_, err := audit.Verify(context.Background(), func() (audit.Entry, bool, error) { return audit.Entry{}, false, boom }, nil, nil)
	if !errors.Is(err, boom) {
		t.Errorf("iterator error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := audit.Verify(ctx, iterate(es), cps, s); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}

	// An iterator reports an entry it cannot decode as a *Problem and goes on.
	i := 0
	next := func() (audit.Entry, bool, error) {
		if i == len(es) {
			return audit.Entry{}, false, nil
		}
		i++
		if i == 2 {
			return es[1], true, &audit.Problem{Seq: 2, Reason: "undecodable"}
		}
		return es[i-1], true, nil
	}
	r, err := audit.Verify(context.Background(), next, cps, s)
	if err != nil || r.FirstBad == nil || r.FirstBad.Seq != 2 || r.FirstBad.Reason != "undecodable" || r.Entries != 5 {
		t.Errorf("decoding problem: %+v, %v", r, err)
	}
}
