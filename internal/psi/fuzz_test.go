package psi_test

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// FuzzDecode: Decode never panics, and whatever it accepts encodes back
// to exactly the same bytes (one encoding per message).
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		if m.Count > 100 {
			continue
		}
		wire, err := psi.Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Add([]byte{})
	f.Add(header(1, byte(psi.MsgGuestPoints), 0xffffffff, 0xffff))
	f.Add(header(1, byte(psi.MsgHostTags), 3, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := psi.Decode(b)
		if err != nil {
			if !errors.Is(err, psi.ErrTruncated) && !errors.Is(err, psi.ErrOversized) &&
				!errors.Is(err, psi.ErrUnknownType) && !errors.Is(err, psi.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(m.Payload) != m.Count*m.ElemLen || m.Count > psi.MaxBatchElems || len(m.Payload) > psi.MaxPayloadBytes {
			t.Fatalf("accepted an inconsistent message: %+v", m)
		}
		re, err := psi.Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", re, b)
		}
	})
}

// FuzzReblind: Reblind never panics on received bytes; when it refuses a
// batch, the element it names is invalid on its own and every earlier one
// is valid; when it accepts, another key accepts the same batch.
func FuzzReblind(f *testing.F) {
	for _, h := range validEncodings {
		f.Add(unhex(f, h), uint8(0))
	}
	for _, h := range invalidEncodings() {
		f.Add(append(unhex(f, validEncodings[0]), unhex(f, h)...), uint8(10))
	}
	f.Add([]byte{1, 2, 3}, uint8(5))
	k1, k2 := newKey(f), newKey(f)
	f.Fuzz(func(t *testing.T, in []byte, tl uint8) {
		tagLen := int(tl) % 34 // 33 is out of range on purpose
		width := tagLen
		if tagLen == 0 {
			width = psi.PointBytes
		}
		n := len(in) / psi.PointBytes
		err := k1.Reblind(in, tagLen, make([]byte, n*width))
		switch {
		case len(in)%psi.PointBytes != 0 || tagLen > 32:
			if !errors.Is(err, psi.ErrMalformed) {
				t.Fatalf("bad shape: got %v", err)
			}
		case err == nil:
			if err := k2.Reblind(in, 0, make([]byte, len(in))); err != nil {
				t.Fatalf("one key accepts what another refuses: %v", err)
			}
		default:
			var pe *psi.PointError
			if !errors.As(err, &pe) || pe.Index < 0 || pe.Index >= n {
				t.Fatalf("got %v", err)
			}
			bad := in[pe.Index*psi.PointBytes : (pe.Index+1)*psi.PointBytes]
			if k2.Reblind(bad, 0, make([]byte, 32)) == nil {
				t.Fatalf("element %d accepted on its own", pe.Index)
			}
			if pe.Index > 0 {
				if err := k2.Reblind(in[:pe.Index*psi.PointBytes], 0, make([]byte, pe.Index*psi.PointBytes)); err != nil {
					t.Fatalf("an element before %d is invalid: %v", pe.Index, err)
				}
			}
		}
	})
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)

// FuzzNormalize: Apply never panics, and what it returns is valid UTF-8,
// not empty, a fixed point of Apply, and in phone mode E.164.
func FuzzNormalize(f *testing.F) {
	f.Add(true, true, "", " Alice@Example.COM ")
	f.Add(true, false, "86", "(010) 8888-1234")
	f.Add(false, false, "86", "0086 138 0013 8000")
	f.Add(false, true, "", "ΣΊΣΥΦΟΣ\u212a")
	f.Add(true, true, "1", "\xff")
	f.Fuzz(func(t *testing.T, trim, fold bool, phone, id string) {
		n := psi.Normalization{Trim: trim, CaseFold: fold, Phone: phone}
		got, err := n.Apply(id)
		if err != nil {
			return
		}
		if got == "" || !utf8.ValidString(got) {
			t.Fatalf("Apply(%q) = %q", id, got)
		}
		if phone != "" && !e164.MatchString(got) {
			t.Fatalf("phone %q normalised to %q, not E.164", id, got)
		}
		again, err := n.Apply(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q → %q → %q, %v", id, got, again, err)
		}
	})
}

// FuzzCaseFold: with CaseFold, two identifiers normalise alike exactly
// when strings.EqualFold says they are equal.
func FuzzCaseFold(f *testing.F) {
	f.Add("Alice", "aLICE")
	f.Add("\u212a", "k")
	f.Add("ſ", "S")
	f.Add("σ", "ς")
	f.Add("İ", "i")
	f.Add("Straße", "STRASSE")
	n := psi.Normalization{CaseFold: true}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) || a == "" || b == "" {
			return
		}
		na, errA := n.Apply(a)
		nb, errB := n.Apply(b)
		if errA != nil || errB != nil {
			t.Fatalf("valid UTF-8 refused: %v %v", errA, errB)
		}
		if (na == nb) != strings.EqualFold(a, b) {
			t.Fatalf("%q→%q, %q→%q, EqualFold %v", a, na, b, nb, strings.EqualFold(a, b))
		}
	})
}

// FuzzRoleHandle feeds a received message, after a correct opening, to a
// host or a guest: no input may panic, and every refusal is typed.
func FuzzRoleHandle(f *testing.F) {
	ctx := f.Context()
	cfg := psi.Config{Session: []byte("fuzz"), Mode: psi.ModeBothLearn, BatchSize: 2}
	ids := bs([]string{"a", "b", "c"})
	// Seeds: the real messages of a session, each way.
	g, _ := psi.ECDH{}.NewGuest(cfg, ids)
	h, _ := psi.ECDH{}.NewHost(cfg, ids)
	toHost, _ := g.Start(ctx)
	for len(toHost) > 0 {
		out, err := h.Handle(ctx, toHost[0])
		if err != nil {
			f.Fatal(err)
		}
		toHost = toHost[1:]
		for _, m := range out {
			w, _ := psi.Encode(m)
			f.Add(w, true)
			back, err := g.Handle(ctx, m)
			if err != nil {
				f.Fatal(err)
			}
			for _, b := range back {
				w, _ := psi.Encode(b)
				f.Add(w, false)
			}
			toHost = append(toHost, back...)
		}
	}
	f.Fuzz(func(t *testing.T, wire []byte, toGuest bool) {
		msg, err := psi.Decode(wire)
		if err != nil {
			return
		}
		guest, err := psi.ECDH{}.NewGuest(cfg, ids)
		if err != nil {
			t.Fatal(err)
		}
		defer guest.Close()
		host, err := psi.ECDH{}.NewHost(cfg, ids)
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		hello, _ := guest.Start(ctx)
		reply, err := host.Handle(ctx, hello[0])
		if err != nil {
			t.Fatal(err)
		}
		target := host
		if toGuest {
			target = guest
			if _, err := guest.Handle(ctx, reply[0]); err != nil {
				t.Fatal(err)
			}
		}
		_, err = target.Handle(ctx, msg)
		if err != nil && !errors.Is(err, psi.ErrProtocol) && !errors.Is(err, psi.ErrWrongSession) &&
			!errors.Is(err, psi.ErrMismatch) && !errors.Is(err, psi.ErrMalformed) && !errors.Is(err, psi.ErrInvalidPoint) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
