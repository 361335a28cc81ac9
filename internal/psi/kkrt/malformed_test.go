package kkrt_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

// onFirst returns a tamperFunc that applies fn to the first message of type
// t travelling in dir, decoded; fn returns the bytes to deliver instead.
func onFirst(dir direction, t kkrt.MsgType, fn func(m kkrt.Message, wire []byte) []byte) tamperFunc {
	done := false
	return func(d direction, _ int, wire []byte) []byte {
		if done || d != dir || kkrt.MsgType(wire[1]) != t {
			return wire
		}
		done = true
		m, err := kkrt.Decode(wire)
		if err != nil {
			panic(err)
		}
		return fn(m, append([]byte(nil), wire...))
	}
}

// reencode changes a decoded message and encodes it again.
func reencode(change func(m *kkrt.Message)) func(kkrt.Message, []byte) []byte {
	return func(m kkrt.Message, _ []byte) []byte {
		m.Payload = append([]byte(nil), m.Payload...)
		change(&m)
		out, err := kkrt.Encode(m)
		if err != nil {
			panic(err)
		}
		return out
	}
}

func raw(change func(b []byte) []byte) func(kkrt.Message, []byte) []byte {
	return func(_ kkrt.Message, wire []byte) []byte { return change(wire) }
}

// TestMalformedMessages: every kind of broken or out-of-place message is
// refused with an error of the right kind, and never panics.
func TestMalformedMessages(t *testing.T) {
	const h = kkrt.HeaderBytes
	cases := []struct {
		name   string
		mode   psi.Mode
		tamper tamperFunc
		want   error
	}{
		{"truncated guest hello", 0, onFirst(toHost, kkrt.MsgGuestHello, raw(func(b []byte) []byte { return b[:len(b)-1] })), kkrt.ErrTruncated},
		{"trailing byte after host hello", 0, onFirst(toGuest, kkrt.MsgHostHello, raw(func(b []byte) []byte { return append(b, 0) })), kkrt.ErrOversized},
		{"header only", 0, onFirst(toHost, kkrt.MsgExtension, raw(func(b []byte) []byte { return b[:h-1] })), kkrt.ErrTruncated},
		{"psi format version", 0, onFirst(toHost, kkrt.MsgExtension, raw(func(b []byte) []byte { b[0] = psi.FormatVersion; return b })), psi.ErrMalformed},
		{"unknown type", 0, onFirst(toGuest, kkrt.MsgExtensionAck, raw(func(b []byte) []byte { b[1] = 99; return b })), kkrt.ErrUnknownType},
		{"count above the limit", 0, onFirst(toHost, kkrt.MsgExtension, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[22:], kkrt.MaxBatchElems+1)
			return b
		})), kkrt.ErrOversized},
		{"extension of another session", 0, onFirst(toHost, kkrt.MsgExtension, raw(func(b []byte) []byte { b[5] ^= 1; return b })), psi.ErrWrongSession},
		{"extension batch out of range", 0, onFirst(toHost, kkrt.MsgExtension, reencode(func(m *kkrt.Message) { m.Batch = 1000 })), psi.ErrProtocol},
		{"extension batch repeated", 0, func() tamperFunc {
			seen := 0
			return func(d direction, _ int, wire []byte) []byte {
				if d == toHost && kkrt.MsgType(wire[1]) == kkrt.MsgExtension {
					if seen++; seen == 2 {
						binary.BigEndian.PutUint32(wire[18:], 0)
					}
				}
				return wire
			}
		}(), psi.ErrProtocol},
		{"extension short of a row", 0, onFirst(toHost, kkrt.MsgExtension, reencode(func(m *kkrt.Message) {
			m.Count--
			m.Payload = m.Payload[:m.Count*m.ElemLen]
		})), psi.ErrProtocol},
		{"extension rows of the wrong width", 0, onFirst(toHost, kkrt.MsgExtension, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[26:], kkrt.RowBytes+1)
			return b
		})), psi.ErrMalformed},
		{"ack for a batch not sent", 0, onFirst(toGuest, kkrt.MsgExtensionAck, reencode(func(m *kkrt.Message) { m.Batch = 50 })), psi.ErrProtocol},
		{"tags before the extension ended", 0, onFirst(toGuest, kkrt.MsgExtensionAck, reencode(func(m *kkrt.Message) {
			m.Type, m.Count, m.ElemLen, m.Payload = kkrt.MsgHostTags, 1, 3*10, make([]byte, 30)
		})), psi.ErrProtocol},
		{"tags of the wrong length", 0, onFirst(toGuest, kkrt.MsgHostTags, reencode(func(m *kkrt.Message) {
			m.ElemLen += 3
			m.Payload = make([]byte, m.Count*m.ElemLen)
		})), psi.ErrProtocol},
		{"tags batch short", 0, onFirst(toGuest, kkrt.MsgHostTags, reencode(func(m *kkrt.Message) {
			m.Count--
			m.Payload = m.Payload[:m.Count*m.ElemLen]
		})), psi.ErrProtocol},
		{"tag ack for a batch not sent", 0, onFirst(toHost, kkrt.MsgTagsAck, reencode(func(m *kkrt.Message) { m.Batch = 7 })), psi.ErrProtocol},
		{"extension before the hello", 0, onFirst(toHost, kkrt.MsgGuestHello, reencode(func(m *kkrt.Message) {
			m.Type, m.ElemLen, m.Count, m.Payload = kkrt.MsgExtension, kkrt.RowBytes, 1, make([]byte, kkrt.RowBytes)
		})), psi.ErrProtocol},
		{"guest hello with the identity point", 0, onFirst(toHost, kkrt.MsgGuestHello, raw(func(b []byte) []byte {
			clear(b[h+36:])
			return b
		})), psi.ErrInvalidPoint},
		{"host hello with a non-canonical point", 0, onFirst(toGuest, kkrt.MsgHostHello, raw(func(b []byte) []byte {
			for i := range 32 {
				b[h+36+5*32+i] = 0xff
			}
			return b
		})), psi.ErrInvalidPoint},
		{"host hello of another version", 0, onFirst(toGuest, kkrt.MsgHostHello, raw(func(b []byte) []byte { b[h] = 2; return b })), psi.ErrMismatch},
		{"guest hello reserved byte", 0, onFirst(toHost, kkrt.MsgGuestHello, raw(func(b []byte) []byte { b[h+3] = 1; return b })), psi.ErrMalformed},
		{"guest hello batch not a multiple of 128", 0, onFirst(toHost, kkrt.MsgGuestHello, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[h+8:], 1000)
			return b
		})), psi.ErrMalformed},
		{"guest hello set too large", 0, onFirst(toHost, kkrt.MsgGuestHello, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[h+4:], kkrt.MaxSetSize+1)
			return b
		})), psi.ErrMalformed},
		{"host hello batch zero", 0, onFirst(toGuest, kkrt.MsgHostHello, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[h+8:], 0)
			return b
		})), psi.ErrMalformed},
		{"host hello in cardinality mode", 0, onFirst(toGuest, kkrt.MsgHostHello, raw(func(b []byte) []byte { b[h+1] = byte(psi.ModeCardinality); return b })), psi.ErrMismatch},
		{"done with wrong counts", 0, onFirst(toHost, kkrt.MsgDone, raw(func(b []byte) []byte { b[h+7] = 9; return b })), psi.ErrProtocol},
		{"reveal outside both-learn", 0, onFirst(toHost, kkrt.MsgDone, reencode(func(m *kkrt.Message) {
			m.Type, m.ElemLen, m.Count, m.Payload = kkrt.MsgReveal, 4, 2, []byte{0, 0, 0, 1, 0, 0, 0, 2}
		})), psi.ErrProtocol},
		{"reveal out of range", psi.ModeBothLearn, onFirst(toHost, kkrt.MsgReveal, raw(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[h:], 1<<30)
			return b
		})), psi.ErrProtocol},
		{"reveal not ascending", psi.ModeBothLearn, onFirst(toHost, kkrt.MsgReveal, raw(func(b []byte) []byte {
			copy(b[h:h+4], b[h+4:h+8])
			return b
		})), psi.ErrProtocol},
		{"reveal batch out of order", psi.ModeBothLearn, onFirst(toHost, kkrt.MsgReveal, reencode(func(m *kkrt.Message) { m.Batch = 1 })), psi.ErrProtocol},
	}
	g, hs := psitest.Overlap("malformed", 300, 200, 60)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mode := c.mode
			if mode == 0 {
				mode = psi.ModeIntersection
			}
			cfg := kkrt.Config{Session: []byte("malformed"), Mode: mode, BatchSize: 128}
			_, _, err := runKKRT(t, cfg, g, hs, c.tamper)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestAbortedRoleStaysAborted: after an error every call fails with
// psi.ErrAborted.
func TestAbortedRoleStaysAborted(t *testing.T) {
	cfg := kkrt.Config{Session: []byte("abort"), Mode: psi.ModeIntersection}
	host, err := kkrt.NewHostRole(cfg, [][]byte{[]byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	bad := kkrt.Message{Type: kkrt.MsgTagsAck, Session: kkrt.SessionTagOf(cfg.Session)}
	if _, err := host.Handle(t.Context(), bad); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("got %v", err)
	}
	if _, err := host.Handle(t.Context(), bad); !errors.Is(err, psi.ErrAborted) {
		t.Fatalf("second call: %v", err)
	}
	if _, err := host.Result(); !errors.Is(err, psi.ErrAborted) {
		t.Fatalf("result: %v", err)
	}
	// A message built in process with an inconsistent payload is refused.
	guest, err := kkrt.NewGuestRole(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	odd := kkrt.Message{Type: kkrt.MsgHostHello, Session: kkrt.SessionTagOf(cfg.Session), Count: 1, ElemLen: kkrt.HostHelloBytes}
	if _, err := guest.Handle(t.Context(), odd); !errors.Is(err, psi.ErrMalformed) {
		t.Fatalf("got %v", err)
	}
}
