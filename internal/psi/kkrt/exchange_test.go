package kkrt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

// direction of a message.
type direction int

const (
	toHost direction = iota
	toGuest
)

// stats counts one exchange's traffic.
type stats struct {
	messages [2]int
	bytes    [2]int64
}

func (s stats) total() int64 { return s.bytes[toHost] + s.bytes[toGuest] }

// tamperFunc sees every encoded message (seq counts messages of one
// direction) and returns the bytes to deliver instead.
type tamperFunc func(dir direction, seq int, wire []byte) []byte

// exchange runs a session between two roles in memory, every message
// through Encode and Decode, delivering alternately in each direction.
func exchange(ctx context.Context, guest, host kkrt.Role, tamper tamperFunc) (stats, error) {
	var st stats
	toH, err := guest.Start(ctx)
	if err != nil {
		return st, fmt.Errorf("guest start: %w", err)
	}
	toG, err := host.Start(ctx)
	if err != nil {
		return st, fmt.Errorf("host start: %w", err)
	}
	deliver := func(dir direction, m kkrt.Message, to kkrt.Role) ([]kkrt.Message, error) {
		wire, err := kkrt.Encode(m)
		if err != nil {
			return nil, fmt.Errorf("encode: %w", err)
		}
		st.messages[dir]++
		st.bytes[dir] += int64(len(wire))
		if tamper != nil {
			wire = tamper(dir, st.messages[dir]-1, wire)
		}
		got, err := kkrt.Decode(wire)
		if err != nil {
			return nil, err
		}
		return to.Handle(ctx, got)
	}
	for len(toH)+len(toG) > 0 {
		if st.messages[0]+st.messages[1] > 1<<20 {
			return st, fmt.Errorf("too many messages")
		}
		if len(toH) > 0 {
			out, err := deliver(toHost, toH[0], host)
			if err != nil {
				return st, err
			}
			toH, toG = toH[1:], append(toG, out...)
		}
		if len(toG) > 0 {
			out, err := deliver(toGuest, toG[0], guest)
			if err != nil {
				return st, err
			}
			toG, toH = toG[1:], append(toH, out...)
		}
	}
	if !guest.Done() || !host.Done() {
		return st, fmt.Errorf("session stalled (guest done %v, host done %v)", guest.Done(), host.Done())
	}
	return st, nil
}

func normalize(t testing.TB, n psi.Normalization, ids []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v, err := n.Apply(id)
		if err != nil {
			t.Fatalf("identifier %d: %v", i, err)
		}
		out[i] = []byte(v)
	}
	return out
}

// runKKRT runs a whole KKRT session in memory and returns what both sides
// learned.
func runKKRT(t testing.TB, cfg kkrt.Config, guest, host []string, tamper tamperFunc) (psitest.Outcome, stats, error) {
	t.Helper()
	hostCfg := cfg
	g, err := kkrt.NewGuestRole(cfg, normalize(t, cfg.Normalization, guest))
	if err != nil {
		return psitest.Outcome{}, stats{}, err
	}
	defer g.Close()
	h, err := kkrt.NewHostRole(hostCfg, normalize(t, cfg.Normalization, host))
	if err != nil {
		return psitest.Outcome{}, stats{}, err
	}
	defer h.Close()
	st, err := exchange(t.Context(), g, h, tamper)
	if err != nil {
		return psitest.Outcome{}, st, err
	}
	gr, err := g.Result()
	if err != nil {
		return psitest.Outcome{}, st, err
	}
	hr, err := h.Result()
	if err != nil {
		return psitest.Outcome{}, st, err
	}
	return psitest.Outcome{Guest: gr, Host: hr}, st, nil
}
