package hetero

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

func TestDecode(t *testing.T) {
	good, err := Encode(Message{Type: MsgScores, Epoch: 3, Batch: 9, Payload: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(good)
	if err != nil || m.Type != MsgScores || m.Epoch != 3 || m.Batch != 9 || !bytes.Equal(m.Payload, []byte{1, 2, 3}) {
		t.Fatalf("round trip: %v %v", m, err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short header", good[:HeaderBytes-1], ErrMalformed},
		{"version", mut(func(b []byte) []byte { b[0] = 2; return b }), ErrMalformed},
		{"unknown type", mut(func(b []byte) []byte { b[1] = 200; return b }), ErrUnknownType},
		{"type zero", mut(func(b []byte) []byte { b[1] = 0; return b }), ErrUnknownType},
		{"truncated payload", good[:len(good)-1], ErrMalformed},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"length over the limit", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[10:], MaxPayloadBytes+1); return b }), ErrOversized},
		{"ready with payload", mut(func(b []byte) []byte { b[1] = byte(MsgReady); return b }), ErrOversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Encode(Message{Type: MsgAbort, Payload: make([]byte, MaxReasonBytes+1)}); !errors.Is(err, ErrOversized) {
		t.Fatalf("oversized abort encoded: %v", err)
	}
}

// tamper rewrites the messages sent through it.
type tamper struct {
	Transport
	f func(m Message) Message
}

func (t tamper) Send(ctx context.Context, m Message) error { return t.Transport.Send(ctx, t.f(m)) }

func smallRun(t *testing.T) (*dataset.Table, []*dataset.Table, GuestConfig) {
	t.Helper()
	g, h := credit(t)
	tabs := subset(1500, g, h)
	cfg := lr.DefaultConfig()
	cfg.Epochs, cfg.Patience = 2, 0
	return tabs[0], tabs[1:], GuestConfig{Train: cfg, Split: dataset.DefaultSplit()}
}

// TestTamperedMessagesAbort corrupts or reorders one message of a real run
// and checks that both sides stop with a clear error.
func TestTamperedMessagesAbort(t *testing.T) {
	once := func(typ MsgType, f func(m Message) Message) func(Message) Message {
		done := false
		return func(m Message) Message {
			if m.Type == typ && !done {
				done = true
				return f(m)
			}
			return m
		}
	}
	tests := []struct {
		name      string
		guestSide bool // tamper what the guest sends (else what host 0 sends)
		f         func(Message) Message
		guestErr  error
		hostErr   error
	}{
		{"gradient truncated", false, once(MsgGradient, func(m Message) Message { m.Payload = m.Payload[:len(m.Payload)-8]; return m }), ErrMalformed, ErrAborted},
		{"gradient residue not reduced", false, once(MsgGradient, func(m Message) Message {
			m.Payload = append([]byte(nil), m.Payload...)
			binary.LittleEndian.PutUint64(m.Payload, ^uint64(0))
			return m
		}), ErrMalformed, ErrAborted},
		{"scores of another batch", false, once(MsgScores, func(m Message) Message { m.Batch++; return m }), ErrProtocol, ErrAborted},
		{"score beyond the mask range", false, once(MsgScores, func(m Message) Message {
			m.Payload = append([]byte(nil), m.Payload...)
			m.Payload[0] = 0x7f
			return m
		}), ErrMalformed, ErrAborted},
		{"scores of another epoch", false, once(MsgScores, func(m Message) Message { m.Epoch = 7; return m }), ErrProtocol, ErrAborted},
		{"scores replayed", false, func() func(Message) Message {
			var first *Message
			return func(m Message) Message {
				if m.Type == MsgScores {
					if first == nil {
						first = &m
					} else {
						return *first
					}
				}
				return m
			}
		}(), ErrProtocol, ErrAborted},
		{"ready instead of scores", false, once(MsgScores, func(m Message) Message { return Message{Type: MsgReady} }), ErrProtocol, ErrAborted},
		{"hello reply not JSON", false, once(MsgHelloReply, func(m Message) Message { m.Payload = []byte("{"); return m }), ErrMalformed, ErrAborted},
		{"hello reply with unknown field", false, once(MsgHelloReply, func(m Message) Message {
			m.Payload = append(bytes.TrimSuffix(m.Payload, []byte("}")), []byte(`,"x":1}`)...)
			return m
		}), ErrMalformed, ErrAborted},
		{"residual for a later batch", true, once(MsgResidual, func(m Message) Message { m.Batch += 1; return m }), ErrAborted, ErrProtocol},
		{"residual truncated", true, once(MsgResidual, func(m Message) Message { m.Payload = m.Payload[:100]; return m }), ErrAborted, ErrMalformed},
		{"decrypted values missing", true, once(MsgDecrypted, func(m Message) Message { m.Payload = nil; return m }), ErrAborted, ErrMalformed},
		{"epoch end with unknown flags", true, once(MsgEpochEnd, func(m Message) Message { m.Payload = []byte{0x80}; return m }), ErrAborted, ErrMalformed},
		{"hello with weak masks", true, once(MsgHello, func(m Message) Message {
			m.Payload = bytes.Replace(m.Payload, []byte(`"mask_bits":40`), []byte(`"mask_bits":20`), 1)
			return m
		}), ErrAborted, ErrParams},
		{"hello with an oversized modulus", true, once(MsgHello, func(m Message) Message {
			m.Payload = bytes.Replace(m.Payload, []byte(`"q":[`), []byte(`"q":[18014398509404161,`), 1)
			return m
		}), ErrAborted, ErrParams},
		{"hello with a different budget", true, once(MsgHello, func(m Message) Message {
			m.Payload = bytes.Replace(m.Payload, []byte(`"flood_log2":`), []byte(`"flood_log2":1`), 1)
			return m
		}), ErrAborted, ErrParams},
		{"constants skipped", true, once(MsgConstants, func(m Message) Message { m.Batch = 3; return m }), ErrAborted, ErrProtocol},
	}
	gt, hts, cfg := smallRun(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var opts fedOpts
			if tt.guestSide {
				opts.wrap = func(h int, tr Transport) Transport { return tamper{tr, tt.f} }
			} else {
				opts.wrapHost = func(h int, tr Transport) Transport { return tamper{tr, tt.f} }
			}
			_, err := runFed(ctx, gt, hts, cfg, opts)
			if err == nil {
				t.Fatal("the run succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("the run hung: %v", err)
			}
			if !strings.Contains(err.Error(), "hetero guest:") || !strings.Contains(err.Error(), "hetero host:") {
				t.Fatalf("both sides should fail: %v", err)
			}
			for _, want := range []error{tt.guestErr, tt.hostErr} {
				if want != nil && !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			t.Log(err)
		})
	}
}

// TestFakeHostOutOfOrder drives the guest with a scripted host.
func TestFakeHostOutOfOrder(t *testing.T) {
	gt, _, cfg := smallRun(t)
	a, b := Pipe(16)
	guest, err := NewGuest(cfg, gt, []HostPeer{{Name: "fake", Transport: a}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := guest.Run(ctx); done <- err }()
	if m, err := b.Recv(ctx); err != nil || m.Type != MsgHello {
		t.Fatalf("first message %v %v", m, err)
	}
	if err := b.Send(ctx, Message{Type: MsgGradient, Epoch: 0, Batch: 0}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "want hello-reply") {
		t.Fatalf("guest error %v", err)
	}
	m, err := b.Recv(ctx)
	if err != nil || m.Type != MsgAbort || string(m.Payload) != ErrProtocol.Error() {
		t.Fatalf("abort %v %v", m, err)
	}
}

// TestPeerAbort: an Abort from the host stops the guest with its reason.
func TestPeerAbort(t *testing.T) {
	gt, _, cfg := smallRun(t)
	a, b := Pipe(16)
	guest, err := NewGuest(cfg, gt, []HostPeer{{Name: "fake", Transport: a}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := guest.Run(ctx); done <- err }()
	if _, err := b.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, Message{Type: MsgAbort, Payload: []byte("policy\x00refused")}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), "policy?refused") {
		t.Fatalf("guest error %v", err)
	}
}

// TestFakeGuestOutOfOrder drives a host with a scripted guest.
func TestFakeGuestOutOfOrder(t *testing.T) {
	_, hts, _ := smallRun(t)
	a, b := Pipe(16)
	host, err := NewHost(HostConfig{}, hts[0], b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := host.Run(ctx); done <- err }()
	if err := a.Send(ctx, Message{Type: MsgResidual, Epoch: 0, Batch: 0, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrProtocol) {
		t.Fatalf("host error %v", err)
	}
	if m, err := a.Recv(ctx); err != nil || m.Type != MsgAbort {
		t.Fatalf("abort %v %v", m, err)
	}
}

// TestMismatchedData: a host aligned on other identifiers is refused.
func TestMismatchedData(t *testing.T) {
	gt, hts, cfg := smallRun(t)
	other := hts[0].Rows([]int{1, 0})
	other = &dataset.Table{IDs: append(other.IDs, hts[0].IDs[2:]...), Features: hts[0].Features, X: hts[0].X}
	_, err := runFed(context.Background(), gt, []*dataset.Table{other}, cfg, fedOpts{})
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("err = %v", err)
	}
}

func TestRunCancelled(t *testing.T) {
	gt, hts, cfg := smallRun(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Started = cancel
	_, err := runFed(ctx, gt, hts, cfg, fedOpts{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
