package kkrt_test

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

// pair is a guest and a host after the hellos.
type pair struct {
	cfg    kkrt.Config
	gIDs   [][]byte
	hIDs   [][]byte
	g      *kkrt.Guest
	h      *kkrt.Host
	common int
}

func newPair(t *testing.T, mode psi.Mode, n, m, common, batch int) *pair {
	t.Helper()
	gs, hs := psitest.Overlap("restore", n, m, common)
	p := &pair{cfg: kkrt.Config{Session: []byte("restore"), Mode: mode, BatchSize: batch}, common: common}
	p.gIDs, p.hIDs = normalize(t, p.cfg.Normalization, gs), normalize(t, p.cfg.Normalization, hs)
	var err error
	if p.g, err = kkrt.NewGuest(p.cfg, p.gIDs); err != nil {
		t.Fatal(err)
	}
	if p.h, err = kkrt.NewHost(p.cfg, p.hIDs); err != nil {
		t.Fatal(err)
	}
	reply, err := p.h.Respond(p.g.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.g.Accept(reply); err != nil {
		t.Fatal(err)
	}
	return p
}

// finish sends every extension batch of g to h, fetches every tag batch
// and returns the guest's result and the matched host positions.
func finish(t *testing.T, g *kkrt.Guest, h *kkrt.Host) (psi.Result, []int) {
	t.Helper()
	for b := range g.ExtensionBatches() {
		u, err := g.Extension(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddExtension(b, u); err != nil {
			t.Fatal(err)
		}
	}
	var rows, positions []int
	for b := range g.TagBatches() {
		tags, err := h.Tags(b)
		if err != nil {
			t.Fatal(err)
		}
		r, p, err := g.Match(b, tags)
		if err != nil {
			t.Fatal(err)
		}
		rows, positions = append(rows, r...), append(positions, p...)
	}
	return g.Result(rows), positions
}

func TestRestoreGuest(t *testing.T) {
	p := newPair(t, psi.ModeIntersection, 3000, 2000, 700, 1024)
	var sent [][]byte
	for b := range p.g.ExtensionBatches() {
		u, err := p.g.Extension(b)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, u)
	}
	state, err := p.g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p.g.Close()
	if _, err := p.g.Extension(0); !errors.Is(err, kkrt.ErrNotReady) {
		t.Fatalf("extension after Close: %v", err)
	}
	g2, err := kkrt.RestoreGuest(p.cfg, p.gIDs, state)
	if err != nil {
		t.Fatal(err)
	}
	for b, want := range sent {
		u, err := g2.Extension(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(u, want) {
			t.Fatalf("restored guest computes another extension batch %d", b)
		}
	}
	res, _ := finish(t, g2, p.h)
	if res.Count != p.common {
		t.Fatalf("restored guest found %d, want %d", res.Count, p.common)
	}
	// Restored with other identifiers, the guest computes other extension
	// batches, which the host's replay check refuses.
	if g3, err := kkrt.RestoreGuest(p.cfg, p.gIDs[1:], state); err == nil {
		refused := 0
		for b := range g3.ExtensionBatches() {
			u, _ := g3.Extension(b)
			if err := p.h.AddExtension(b, u); errors.Is(err, psi.ErrProtocol) {
				refused++
			}
		}
		if refused == 0 {
			t.Fatal("a changed input replayed every extension batch unnoticed")
		}
	}
}

// TestRestoreHost: the host restarts in the middle of the extension phase;
// its restored state needs every extension batch again and then gives the
// same values.
func TestRestoreHost(t *testing.T) {
	for _, mode := range []psi.Mode{psi.ModeIntersection, psi.ModeBothLearn} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newPair(t, mode, 4000, 3000, 1000, 1024)
			half := p.g.ExtensionBatches() / 2
			for b := range half {
				u, _ := p.g.Extension(b)
				if err := p.h.AddExtension(b, u); err != nil {
					t.Fatal(err)
				}
			}
			state, err := p.h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			p.h.Close()
			if err := p.h.AddExtension(half, nil); !errors.Is(err, kkrt.ErrNotReady) {
				t.Fatalf("extension after Close: %v", err)
			}
			h2, err := kkrt.RestoreHost(p.cfg, p.hIDs, state)
			if err != nil {
				t.Fatal(err)
			}
			if h2.ExtensionComplete() {
				t.Fatal("a restored host claims the extension phase")
			}
			if _, err := h2.Tags(0); !errors.Is(err, kkrt.ErrNotReady) {
				t.Fatalf("tags before the extension: %v", err)
			}
			res, positions := finish(t, p.g, h2)
			if res.Count != p.common {
				t.Fatalf("found %d, want %d", res.Count, p.common)
			}
			if mode == psi.ModeBothLearn {
				rows, err := h2.Learn(positions)
				if err != nil {
					t.Fatal(err)
				}
				_, want, _ := psitest.Reference(psi.Normalization{}, toStrings(p.gIDs), toStrings(p.hIDs))
				if !slices.Equal(rows, want) {
					t.Fatalf("host learned %d rows, want %d", len(rows), len(want))
				}
			}
		})
	}
}

func toStrings(ids [][]byte) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func TestPhaseOrder(t *testing.T) {
	p := newPair(t, psi.ModeIntersection, 500, 400, 100, 256)
	if _, _, err := p.g.Match(0, make([]byte, p.g.TagBatchLen(0)*kkrt.NumHashes*p.g.TagLen())); !errors.Is(err, kkrt.ErrNotReady) {
		t.Fatalf("match before extension: %v", err)
	}
	u, err := p.g.Extension(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.h.AddExtension(0, u); err != nil {
		t.Fatal(err)
	}
	if err := p.h.AddExtension(0, u); err != nil {
		t.Fatalf("a replay with the same bytes: %v", err)
	}
	u[3] ^= 1
	if err := p.h.AddExtension(0, u); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("a replay with other bytes: %v", err)
	}
	if err := p.h.AddExtension(1, u[:len(u)-1]); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("short batch: %v", err)
	}
	if err := p.h.AddExtension(p.h.ExtensionBatches(), u); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("batch beyond the last: %v", err)
	}
	if _, err := p.g.Extension(-1); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("negative batch: %v", err)
	}
	if _, err := p.h.Learn([]int{1}); !errors.Is(err, psi.ErrProtocol) {
		t.Fatalf("learn outside both-learn mode: %v", err)
	}
}

func TestRestoreRejectsState(t *testing.T) {
	p := newPair(t, psi.ModeIntersection, 100, 100, 10, 128)
	gs, _ := p.g.MarshalBinary()
	hs, _ := p.h.MarshalBinary()
	for name, st := range map[string][]byte{"empty": nil, "short": gs[:len(gs)-1], "version": append([]byte{9}, gs[1:]...)} {
		if _, err := kkrt.RestoreGuest(p.cfg, p.gIDs, st); !errors.Is(err, psi.ErrMalformed) {
			t.Errorf("guest %s: %v", name, err)
		}
	}
	for name, st := range map[string][]byte{"empty": nil, "long": append(hs, 0), "version": append([]byte{9}, hs[1:]...)} {
		if _, err := kkrt.RestoreHost(p.cfg, p.hIDs, st); !errors.Is(err, psi.ErrMalformed) {
			t.Errorf("host %s: %v", name, err)
		}
	}
}

// TestConcurrentBatches drives the batch methods the way a job runner
// does, several batches at once (run it with -race): the result is the
// same, and a batch delivered twice at the same time is absorbed once.
func TestConcurrentBatches(t *testing.T) {
	p := newPair(t, psi.ModeIntersection, 20000, 15000, 4000, 2048)
	us := make([][]byte, p.g.ExtensionBatches())
	var wg sync.WaitGroup
	for b := range us {
		wg.Go(func() {
			u, err := p.g.Extension(b)
			if err != nil {
				t.Error(err)
			}
			us[b] = u
		})
	}
	wg.Wait()
	for b, u := range us {
		for range 2 {
			wg.Go(func() {
				if err := p.h.AddExtension(b, u); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if !p.h.ExtensionComplete() {
		t.Fatal("extension incomplete")
	}
	var mu sync.Mutex
	var rows []int
	for b := range p.g.TagBatches() {
		wg.Go(func() {
			tags, err := p.h.Tags(b)
			if err != nil {
				t.Error(err)
				return
			}
			r, _, err := p.g.Match(b, tags)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			rows = append(rows, r...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if res := p.g.Result(rows); res.Count != p.common {
		t.Fatalf("found %d, want %d", res.Count, p.common)
	}
}

// TestCloseDuringBatches: closing while batches compute (a session
// cancelled mid-flight) waits for them or makes them fail cleanly.
func TestCloseDuringBatches(t *testing.T) {
	p := newPair(t, psi.ModeIntersection, 20000, 15000, 4000, 1024)
	var wg sync.WaitGroup
	for b := range p.g.ExtensionBatches() {
		wg.Go(func() {
			u, err := p.g.Extension(b)
			if err != nil {
				if !errors.Is(err, kkrt.ErrNotReady) {
					t.Error(err)
				}
				return
			}
			if err := p.h.AddExtension(b, u); err != nil && !errors.Is(err, kkrt.ErrNotReady) {
				t.Error(err)
			}
		})
	}
	wg.Go(p.h.Close)
	wg.Go(p.g.Close)
	wg.Wait()
	if _, err := p.h.MarshalBinary(); !errors.Is(err, kkrt.ErrNotReady) {
		t.Fatalf("state after Close: %v", err)
	}
}
