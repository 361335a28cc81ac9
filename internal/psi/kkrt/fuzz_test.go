package kkrt_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
)

// typedDecodeError reports whether err is one of the decoder's errors.
func typedDecodeError(err error) bool {
	return errors.Is(err, kkrt.ErrTruncated) || errors.Is(err, kkrt.ErrOversized) ||
		errors.Is(err, kkrt.ErrUnknownType) || errors.Is(err, psi.ErrMalformed) || errors.Is(err, psi.ErrMismatch)
}

// sessionWire records every message of a small real session, both ways.
func sessionWire(f *testing.F, mode psi.Mode) (toH, toG [][]byte) {
	cfg := kkrt.Config{Session: []byte("fuzz"), Mode: mode, BatchSize: 128}
	ids := func(p string, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = []byte(p + string(rune('a'+i%26)) + string(rune('a'+i/26)))
		}
		return out
	}
	g, err := kkrt.NewGuestRole(cfg, ids("x", 40))
	if err != nil {
		f.Fatal(err)
	}
	h, err := kkrt.NewHostRole(cfg, ids("x", 30))
	if err != nil {
		f.Fatal(err)
	}
	_, err = exchange(f.Context(), g, h, func(d direction, _ int, wire []byte) []byte {
		if d == toHost {
			toH = append(toH, bytes.Clone(wire))
		} else {
			toG = append(toG, bytes.Clone(wire))
		}
		return wire
	})
	if err != nil {
		f.Fatal(err)
	}
	return toH, toG
}

func addSeeds(f *testing.F, wires [][]byte, limit int) {
	for i, w := range wires {
		if i == limit {
			break
		}
		if len(w) < 1<<14 {
			f.Add(w)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes back to the
// same bytes.
func FuzzDecode(f *testing.F) {
	toH, toG := sessionWire(f, psi.ModeBothLearn)
	addSeeds(f, toH, 8)
	addSeeds(f, toG, 8)
	f.Add([]byte{})
	f.Add([]byte{kkrt.FormatVersion, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kkrt.Decode(b)
		if err != nil {
			if !typedDecodeError(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(m.Payload) != m.Count*m.ElemLen || len(m.Payload) > kkrt.MaxPayloadBytes {
			t.Fatalf("inconsistent message accepted: %+v", m)
		}
		re, err := kkrt.Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzParseHellos: the hello decoders never panic, and what they accept
// marshals back to the same bytes.
func FuzzParseHellos(f *testing.F) {
	toH, toG := sessionWire(f, psi.ModeIntersection)
	f.Add(toH[0][kkrt.HeaderBytes:])
	f.Add(toG[0][kkrt.HeaderBytes:])
	f.Add(make([]byte, kkrt.GuestHelloBytes))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := kkrt.ParseGuestHello(b); err == nil {
			re, _ := g.MarshalBinary()
			if !bytes.Equal(re, b) {
				t.Fatal("guest hello does not round-trip")
			}
		} else if !typedDecodeError(err) {
			t.Fatalf("untyped error %v", err)
		}
		if h, err := kkrt.ParseHostHello(b); err == nil {
			re, err := h.MarshalBinary()
			if err != nil || !bytes.Equal(re, b) {
				t.Fatal("host hello does not round-trip")
			}
		} else if !typedDecodeError(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzHostHandle: a host role never panics on whatever arrives first
// (real guest hellos are among the seeds).
func FuzzHostHandle(f *testing.F) {
	toH, _ := sessionWire(f, psi.ModeBothLearn)
	addSeeds(f, toH, 6)
	f.Add(toH[len(toH)-1])
	cfg := kkrt.Config{Session: []byte("fuzz"), Mode: psi.ModeBothLearn, BatchSize: 128}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kkrt.Decode(b)
		if err != nil {
			return
		}
		h, err := kkrt.NewHostRole(cfg, [][]byte{[]byte("xa"), []byte("q")})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, _ = h.Handle(t.Context(), m)
	})
}

// readyPair is a guest and host after the hellos, made once per fuzzing
// process (the base OTs are too slow to redo per input).
type readyPair struct {
	once sync.Once
	g    *kkrt.Guest
	h    *kkrt.Host
	err  error
}

func (r *readyPair) get(t *testing.T) (*kkrt.Guest, *kkrt.Host) {
	r.once.Do(func() {
		cfg := kkrt.Config{Session: []byte("fuzz-ready"), Mode: psi.ModeBothLearn, BatchSize: 128}
		ids := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
		if r.g, r.err = kkrt.NewGuest(cfg, ids); r.err != nil {
			return
		}
		if r.h, r.err = kkrt.NewHost(cfg, ids); r.err != nil {
			return
		}
		var reply kkrt.HostHello
		if reply, r.err = r.h.Respond(r.g.Hello()); r.err != nil {
			return
		}
		r.err = r.g.Accept(reply)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.g, r.h
}

// FuzzBatches: the batch methods of a ready guest and host never panic on
// received bytes: extension rows at the host, tags at the guest, revealed
// positions at the host. A wrong length or a replay with other bytes is an
// error wrapping psi.ErrProtocol; anything else the semi-honest protocol
// cannot tell from honest data.
func FuzzBatches(f *testing.F) {
	var ready readyPair
	f.Add(uint16(0), make([]byte, 128*kkrt.RowBytes))
	f.Add(uint16(3), []byte{1, 2, 3})
	f.Add(uint16(63), make([]byte, 3*kkrt.NumHashes*5))
	f.Fuzz(func(t *testing.T, batch uint16, data []byte) {
		g, h := ready.get(t)
		b := int(batch)
		if err := h.AddExtension(b, data); err != nil && !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("extension: %v", err)
		}
		if _, _, err := g.Match(b%3, data); err != nil && !errors.Is(err, psi.ErrProtocol) && !errors.Is(err, kkrt.ErrNotReady) {
			t.Fatalf("match: %v", err)
		}
		positions := make([]int, 0, len(data))
		for _, v := range data {
			positions = append(positions, int(v)-8)
		}
		if _, err := h.Learn(positions); err != nil && !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("learn: %v", err)
		}
	})
}

// FuzzGuestHandle: a guest never panics on whatever the host sends first,
// nor on what follows a real host hello.
func FuzzGuestHandle(f *testing.F) {
	_, toG := sessionWire(f, psi.ModeIntersection)
	addSeeds(f, toG, 6)
	f.Add(toG[len(toG)-1])
	cfg := kkrt.Config{Session: []byte("fuzz"), Mode: psi.ModeIntersection, BatchSize: 128}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kkrt.Decode(b)
		if err != nil {
			return
		}
		g, err := kkrt.NewGuestRole(cfg, [][]byte{[]byte("xa")})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if _, err := g.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		_, _ = g.Handle(t.Context(), m)
	})
}

// FuzzRestore: the state decoders never panic on stored bytes.
func FuzzRestore(f *testing.F) {
	cfg := kkrt.Config{Session: []byte("fuzz"), Mode: psi.ModeIntersection, BatchSize: 128}
	ids := [][]byte{[]byte("a"), []byte("b")}
	g, err := kkrt.NewGuest(cfg, ids)
	if err != nil {
		f.Fatal(err)
	}
	h, err := kkrt.NewHost(cfg, ids)
	if err != nil {
		f.Fatal(err)
	}
	reply, err := h.Respond(g.Hello())
	if err != nil {
		f.Fatal(err)
	}
	if err := g.Accept(reply); err != nil {
		f.Fatal(err)
	}
	gs, _ := g.MarshalBinary()
	hs, _ := h.MarshalBinary()
	f.Add(gs)
	f.Add(hs)
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := kkrt.RestoreGuest(cfg, ids, b); err == nil && g.ExtensionBatches() > 0 {
			_, _ = g.Extension(0)
		}
		if h, err := kkrt.RestoreHost(cfg, ids, b); err == nil {
			_ = h.TagBatches()
		}
	})
}
