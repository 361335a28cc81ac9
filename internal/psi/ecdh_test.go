package psi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

func TestConformance(t *testing.T) {
	psitest.Run(t, psi.ECDH{})
}

// TestMatchesReferenceLarger runs a few thousand elements over many
// batches in every mode.
func TestMatchesReferenceLarger(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	g, h := psitest.Overlap("larger", 3000, 2500, 900)
	g = append(g, g[:50]...) // duplicates on the guest side
	for _, mode := range []psi.Mode{psi.ModeIntersection, psi.ModeCardinality, psi.ModeBothLearn} {
		t.Run(mode.String(), func(t *testing.T) {
			s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Session: []byte("larger"), Mode: mode, BatchSize: 700, Window: 2}}
			o, err := psitest.Do(t.Context(), psi.ECDH{}, s, psitest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := psitest.Check(s, o); err != nil {
				t.Fatal(err)
			}
			// 900 shared identifiers plus the guest's repeated rows of them.
			if o.Guest.Count <= 900 {
				t.Fatalf("count %d, want more than 900", o.Guest.Count)
			}
		})
	}
}

// TestTraffic checks the bytes on the wire against the formula
// 32·n up, tagLen·n + 32·m down, plus headers.
func TestTraffic(t *testing.T) {
	const n, m = 1000, 800
	g, h := psitest.Overlap("traffic", n, m, 100)
	s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Session: []byte("traffic"), Mode: psi.ModeIntersection, BatchSize: 256}}
	o, err := psitest.Do(t.Context(), psi.ECDH{}, s, psitest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tag := psi.TagBytes(n, m)
	st := o.Stats
	if st.GuestPointBytes != 32*n || st.HostTagBytes != int64(tag*n) || st.HostPointBytes != 32*m {
		t.Fatalf("payloads %d/%d/%d, want %d/%d/%d", st.GuestPointBytes, st.HostTagBytes, st.HostPointBytes, 32*n, tag*n, 32*m)
	}
	// Headers, hellos, acks and done: a few hundred bytes.
	if st.OtherBytes > 1000 {
		t.Fatalf("%d bytes of overhead", st.OtherBytes)
	}
}

// rewrite returns a Tamper that decodes the seq-th message of type typ
// going dir, lets f change it, and re-encodes it.
func rewrite(t *testing.T, dir psitest.Direction, typ psi.MsgType, f func(*psi.Message)) func(psitest.Direction, int, []byte) []byte {
	done := false
	return func(d psitest.Direction, _ int, wire []byte) []byte {
		if d != dir || done {
			return wire
		}
		m, err := psi.Decode(wire)
		if err != nil || m.Type != typ {
			return wire
		}
		done = true
		m.Payload = bytes.Clone(m.Payload)
		f(&m)
		out, err := psi.Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		return out
	}
}

func tamperedSession(mode psi.Mode) psitest.Session {
	g, h := psitest.Overlap("tamper", 40, 30, 10)
	return psitest.Session{Guest: g, Host: h, Config: psi.Config{Session: []byte("tamper"), Mode: mode, BatchSize: 8}}
}

func TestInvalidPointsAbort(t *testing.T) {
	for name, enc := range invalidEncodings() {
		for _, dir := range []psitest.Direction{psitest.ToHost, psitest.ToGuest} {
			t.Run(fmt.Sprintf("%s/%s", dir, name), func(t *testing.T) {
				typ := psi.MsgGuestPoints
				if dir == psitest.ToGuest {
					typ = psi.MsgHostPoints
				}
				bad := unhex(t, enc)
				tamper := rewrite(t, dir, typ, func(m *psi.Message) { copy(m.Payload[3*psi.PointBytes:], bad) })
				_, err := psitest.Do(t.Context(), psi.ECDH{}, tamperedSession(psi.ModeIntersection), psitest.Options{Tamper: tamper})
				var pe *psi.PointError
				if !errors.Is(err, psi.ErrInvalidPoint) || !errors.As(err, &pe) || pe.Index != 3 {
					t.Fatalf("got %v, want ErrInvalidPoint at index 3", err)
				}
			})
		}
	}
}

func TestTamperedMessages(t *testing.T) {
	other := psi.SessionTagOf([]byte("another session"))
	tests := []struct {
		name   string
		mode   psi.Mode
		tamper func(t *testing.T) func(psitest.Direction, int, []byte) []byte
		want   error
	}{
		{"guest batch one element short", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgGuestPoints, func(m *psi.Message) { m.Count--; m.Payload = m.Payload[:m.Count*32] })
		}, psi.ErrProtocol},
		{"host batch one element long", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHostPoints, func(m *psi.Message) { m.Count++; m.Payload = append(m.Payload, m.Payload[:32]...) })
		}, psi.ErrProtocol},
		{"tags of the wrong length", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHostTags, func(m *psi.Message) { m.ElemLen++; m.Payload = make([]byte, m.Count*m.ElemLen) })
		}, psi.ErrProtocol},
		{"tags for a batch never sent", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHostTags, func(m *psi.Message) { m.Batch = 4 })
		}, psi.ErrProtocol},
		{"batch index out of range", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgGuestPoints, func(m *psi.Message) { m.Batch = 1 << 30 })
		}, psi.ErrProtocol},
		{"host points from another session", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHostPoints, func(m *psi.Message) { m.Session = other })
		}, psi.ErrWrongSession},
		{"hello from another session", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgHello, func(m *psi.Message) { m.Session = other })
		}, psi.ErrWrongSession},
		{"hello with another mode", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgHello, func(m *psi.Message) { m.Payload[1] = byte(psi.ModeCardinality) })
		}, psi.ErrMismatch},
		{"hello with another protocol", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHelloReply, func(m *psi.Message) { m.Payload[0] = 2 })
		}, psi.ErrMismatch},
		{"hello with a set too large", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgHello, func(m *psi.Message) { binary.BigEndian.PutUint32(m.Payload[4:8], psi.MaxSetSize+1) })
		}, psi.ErrMalformed},
		{"hello with batch size 0", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToGuest, psi.MsgHelloReply, func(m *psi.Message) { binary.BigEndian.PutUint32(m.Payload[8:12], 0) })
		}, psi.ErrMalformed},
		{"hello claiming a smaller guest set", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgHello, func(m *psi.Message) { binary.BigEndian.PutUint32(m.Payload[4:8], 20) })
		}, psi.ErrProtocol},
		{"ack for a batch not sent", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgAck, func(m *psi.Message) { m.Batch = 3 })
		}, psi.ErrProtocol},
		{"revealed position out of range", psi.ModeBothLearn, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgReveal, func(m *psi.Message) { binary.BigEndian.PutUint32(m.Payload, 30) })
		}, psi.ErrProtocol},
		{"revealed position repeated", psi.ModeBothLearn, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgReveal, func(m *psi.Message) { copy(m.Payload[4:8], m.Payload[0:4]) })
		}, psi.ErrProtocol},
		{"done miscounting reveals", psi.ModeBothLearn, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgDone, func(m *psi.Message) { m.Payload[7]++ })
		}, psi.ErrProtocol},
		{"done with reveals outside both-learn", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgDone, func(m *psi.Message) { m.Payload[3] = 1 })
		}, psi.ErrProtocol},
		{"reveal outside both-learn", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return rewrite(t, psitest.ToHost, psi.MsgDone, func(m *psi.Message) {
				*m = psi.Message{Type: psi.MsgReveal, Session: m.Session, Count: 1, ElemLen: 4, Payload: make([]byte, 4)}
			})
		}, psi.ErrProtocol},
		{"trailing bytes", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return func(d psitest.Direction, seq int, wire []byte) []byte {
				if d == psitest.ToGuest && seq == 2 {
					return append(wire, 0)
				}
				return wire
			}
		}, psi.ErrOversized},
		{"truncated message", psi.ModeIntersection, func(t *testing.T) func(psitest.Direction, int, []byte) []byte {
			return func(d psitest.Direction, seq int, wire []byte) []byte {
				if d == psitest.ToHost && seq == 1 {
					return wire[:len(wire)-5]
				}
				return wire
			}
		}, psi.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := psitest.Do(t.Context(), psi.ECDH{}, tamperedSession(tt.mode), psitest.Options{Tamper: tt.tamper(t)})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSettingsMustAgree(t *testing.T) {
	ids := [][]byte{[]byte("a"), []byte("b")}
	base := psi.Config{Session: []byte("agree"), Mode: psi.ModeIntersection}
	tests := []struct {
		name        string
		guest, host psi.Config
		want        error
	}{
		{"mode", base, psi.Config{Session: base.Session, Mode: psi.ModeBothLearn}, psi.ErrMismatch},
		{"normalisation", base, psi.Config{Session: base.Session, Mode: base.Mode, Normalization: psi.Normalization{CaseFold: true}}, psi.ErrMismatch},
		{"session", base, psi.Config{Session: []byte("other"), Mode: base.Mode}, psi.ErrWrongSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := psi.ECDH{}.NewGuest(tt.guest, ids)
			if err != nil {
				t.Fatal(err)
			}
			h, err := psi.ECDH{}.NewHost(tt.host, ids)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := psitest.Exchange(t.Context(), g, h, psitest.Options{}); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if _, err := h.Result(); !errors.Is(err, psi.ErrAborted) {
				t.Fatalf("host result after failure: %v", err)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]psi.Config{
		"no session":       {Mode: psi.ModeIntersection},
		"no mode":          {Session: []byte("s")},
		"unknown mode":     {Session: []byte("s"), Mode: 9},
		"batch too large":  {Session: []byte("s"), Mode: psi.ModeIntersection, BatchSize: psi.MaxBatchElems + 1},
		"negative batch":   {Session: []byte("s"), Mode: psi.ModeIntersection, BatchSize: -1},
		"negative window":  {Session: []byte("s"), Mode: psi.ModeIntersection, Window: -1},
		"bad country code": {Session: []byte("s"), Mode: psi.ModeIntersection, Normalization: psi.Normalization{Phone: "x"}},
	} {
		if _, err := (psi.ECDH{}).NewGuest(cfg, nil); err == nil {
			t.Errorf("%s: guest accepted", name)
		}
		if _, err := (psi.ECDH{}).NewHost(cfg, nil); err == nil {
			t.Errorf("%s: host accepted", name)
		}
	}
}

// step drives roles by hand for sequencing tests.
func newPair(t *testing.T, mode psi.Mode, n, m int) (psi.Role, psi.Role) {
	t.Helper()
	g, h := psitest.Overlap("pair", n, m, min(n, m)/2)
	cfg := psi.Config{Session: []byte("pair"), Mode: mode, BatchSize: 4, Window: 1}
	guest, err := psi.ECDH{}.NewGuest(cfg, bs(g))
	if err != nil {
		t.Fatal(err)
	}
	host, err := psi.ECDH{}.NewHost(cfg, bs(h))
	if err != nil {
		t.Fatal(err)
	}
	return guest, host
}

func bs(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestSequencing(t *testing.T) {
	ctx := t.Context()
	t.Run("replayed guest batch", func(t *testing.T) {
		guest, host := newPair(t, psi.ModeIntersection, 10, 10)
		hello, _ := guest.Start(ctx)
		reply, err := host.Handle(ctx, hello[0])
		if err != nil {
			t.Fatal(err)
		}
		toHost, err := guest.Handle(ctx, reply[0])
		if err != nil || len(toHost) != 1 || toHost[0].Type != psi.MsgGuestPoints {
			t.Fatalf("guest answered the reply with %v, %v", toHost, err)
		}
		if _, err := host.Handle(ctx, toHost[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := host.Handle(ctx, toHost[0]); !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("replay: got %v, want ErrProtocol", err)
		}
		// The session stays aborted.
		if _, err := host.Handle(ctx, toHost[0]); !errors.Is(err, psi.ErrAborted) {
			t.Fatalf("after abort: got %v, want ErrAborted", err)
		}
	})
	t.Run("points before hello", func(t *testing.T) {
		guest, host := newPair(t, psi.ModeIntersection, 10, 10)
		m := psi.Message{Type: psi.MsgGuestPoints, Session: psi.SessionTagOf([]byte("pair")), Count: 1, ElemLen: 32, Payload: make([]byte, 32)}
		if _, err := host.Handle(ctx, m); !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
		if _, err := guest.Handle(ctx, m); !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("guest before Start: got %v, want ErrProtocol", err)
		}
	})
	t.Run("inconsistent in-process message", func(t *testing.T) {
		_, host := newPair(t, psi.ModeIntersection, 10, 10)
		m := psi.Message{Type: psi.MsgHello, Session: psi.SessionTagOf([]byte("pair")), Count: 1, ElemLen: 20, Payload: make([]byte, 3)}
		if _, err := host.Handle(ctx, m); !errors.Is(err, psi.ErrMalformed) {
			t.Fatalf("got %v, want ErrMalformed", err)
		}
	})
	t.Run("after done", func(t *testing.T) {
		guest, host := newPair(t, psi.ModeIntersection, 5, 5)
		if _, err := psitest.Exchange(ctx, guest, host, psitest.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := guest.Start(ctx); !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("start after done: %v", err)
		}
		if _, err := host.Handle(ctx, psi.Message{Type: psi.MsgAck}); !errors.Is(err, psi.ErrProtocol) {
			t.Fatalf("handle after done: %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		guest, host := newPair(t, psi.ModeIntersection, 5, 5)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := psitest.Exchange(cctx, guest, host, psitest.Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("closed role", func(t *testing.T) {
		guest, host := newPair(t, psi.ModeIntersection, 5, 5)
		guest.Close()
		guest.Close()
		if _, err := psitest.Exchange(ctx, guest, host, psitest.Options{}); !errors.Is(err, psi.ErrAborted) {
			t.Fatalf("got %v, want ErrAborted", err)
		}
	})
	t.Run("result before the end", func(t *testing.T) {
		guest, _ := newPair(t, psi.ModeIntersection, 5, 5)
		if _, err := guest.Result(); err == nil {
			t.Fatal("result before the session ran")
		}
	})
}

// TestCardinalityHidesOrder: in cardinality mode the host's tags arrive
// only after every guest batch, shuffled; the guest gets a count and no
// indices. With 100% overlap, the shuffled tags are not in the guest's
// order (probability of the identity 1/64!).
func TestCardinalityHidesOrder(t *testing.T) {
	g, h := psitest.Overlap("card", 64, 64, 64)
	var order []psi.MsgType
	tamper := func(d psitest.Direction, _ int, wire []byte) []byte {
		m, err := psi.Decode(wire)
		if err == nil && (m.Type == psi.MsgGuestPoints || m.Type == psi.MsgHostTags) {
			order = append(order, m.Type)
		}
		return wire
	}
	s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Session: []byte("card"), Mode: psi.ModeCardinality, BatchSize: 16}}
	o, err := psitest.Do(t.Context(), psi.ECDH{}, s, psitest.Options{Tamper: tamper})
	if err != nil {
		t.Fatal(err)
	}
	if o.Guest.Count != 64 || o.Guest.Indices != nil || o.Host.Learned {
		t.Fatalf("guest %+v host %+v", o.Guest, o.Host)
	}
	want := []psi.MsgType{psi.MsgGuestPoints, psi.MsgGuestPoints, psi.MsgGuestPoints, psi.MsgGuestPoints, psi.MsgHostTags, psi.MsgHostTags, psi.MsgHostTags, psi.MsgHostTags}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("message order %v, want all guest points before any tag", order)
	}
}

// TestAnnouncedSizesCostNothing: a peer that announces the largest set in
// batches of one element must not make the other side allocate for it.
func TestAnnouncedSizesCostNothing(t *testing.T) {
	ctx := t.Context()
	big := func(m *psi.Message) {
		binary.BigEndian.PutUint32(m.Payload[4:8], psi.MaxSetSize)
		binary.BigEndian.PutUint32(m.Payload[8:12], 1)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, mode := range []psi.Mode{psi.ModeIntersection, psi.ModeCardinality} {
		t.Run(mode.String(), func(t *testing.T) {
			guest, host := newPair(t, mode, 10, 10)
			hello, _ := guest.Start(ctx)
			hello[0].Payload = bytes.Clone(hello[0].Payload)
			big(&hello[0])
			before := heap()
			reply, err := host.Handle(ctx, hello[0])
			if err != nil {
				t.Fatal(err)
			}
			if grew := int64(heap()) - int64(before); grew > 8<<20 {
				t.Fatalf("host grew the heap by %d bytes for an announced set", grew)
			}
			reply[0].Payload = bytes.Clone(reply[0].Payload)
			big(&reply[0])
			guest2, _ := newPair(t, mode, 10, 10)
			if _, err := guest2.Start(ctx); err != nil {
				t.Fatal(err)
			}
			before = heap()
			if _, err := guest2.Handle(ctx, reply[0]); err != nil {
				t.Fatal(err)
			}
			if grew := int64(heap()) - int64(before); grew > 8<<20 {
				t.Fatalf("guest grew the heap by %d bytes for an announced set", grew)
			}
			runtime.KeepAlive(host)
			runtime.KeepAlive(guest2)
		})
	}
}
