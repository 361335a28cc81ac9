package kkrt_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

// TestLoopbackTCP runs a session with both parties on their own goroutine
// over a real loopback TCP connection.
func TestLoopbackTCP(t *testing.T) {
	g, h := psitest.Overlap("tcp", 40000, 30000, 12000)
	for _, mode := range []psi.Mode{psi.ModeIntersection, psi.ModeBothLearn} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := kkrt.Config{Session: []byte("tcp/" + mode.String()), Mode: mode, BatchSize: 4096}
			gr, err := kkrt.NewGuestRole(cfg, normalize(t, cfg.Normalization, g))
			if err != nil {
				t.Fatal(err)
			}
			defer gr.Close()
			hr, err := kkrt.NewHostRole(cfg, normalize(t, cfg.Normalization, h))
			if err != nil {
				t.Fatal(err)
			}
			defer hr.Close()
			if _, _, err := runPair(t.Context(), gr, hr); err != nil {
				t.Fatal(err)
			}
			gres, err := gr.Result()
			if err != nil {
				t.Fatal(err)
			}
			hres, err := hr.Result()
			if err != nil {
				t.Fatal(err)
			}
			s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Mode: mode}}
			if err := psitest.Check(s, psitest.Outcome{Guest: gres, Host: hres}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
