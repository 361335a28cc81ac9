package kkrt_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

type setCase struct {
	name        string
	guest, host []string
	norm        psi.Normalization
	batch       int // guest bins per extension batch and host elements per tag batch
	window      int
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func setCases() []setCase {
	g0, h0 := psitest.Overlap("zero", 300, 250, 0)
	g30, h30 := psitest.Overlap("thirty", 2000, 1700, 600)
	g100, h100 := psitest.Overlap("all", 900, 900, 900)
	gSub, hSup := psitest.Overlap("subset", 50, 1400, 50)
	gBig, hSmall := psitest.Overlap("n>m", 20000, 300, 120)
	gDup, hDup := psitest.Overlap("dups", 400, 300, 100)
	gDup = append(gDup, gDup[:150]...)
	hDup = append(append(hDup, hDup[:80]...), hDup[:10]...)
	return []setCase{
		{name: "overlap 0%", guest: g0, host: h0, batch: 128},
		{name: "overlap 30%", guest: g30, host: h30, batch: 256, window: 2},
		{name: "overlap 100%", guest: g100, host: h100},
		{name: "guest subset of host, n<m", guest: gSub, host: hSup, batch: 384, window: 1},
		{name: "n>m above the small-set rule", guest: gBig, host: hSmall, batch: 1000},
		{name: "duplicates", batch: 3,
			guest: []string{"a", "b", "a", "c", "d", "d", "d", "e"},
			host:  []string{"d", "x", "a", "d", "y", "a", "z"}},
		{name: "many duplicates both sides", guest: gDup, host: hDup, batch: 128},
		{name: "all-equal identifiers", guest: repeat("same", 200), host: repeat("same", 70), batch: 128},
		{name: "all-equal, no match", guest: repeat("same", 50), host: repeat("other", 50)},
		{name: "both empty"},
		{name: "guest empty", host: []string{"a", "b", "c"}},
		{name: "host empty", guest: []string{"a", "b", "c"}},
		{name: "single match", guest: []string{"only"}, host: []string{"only"}},
		{name: "single miss", guest: []string{"only"}, host: []string{"other"}},
		{name: "unicode", batch: 2,
			guest: []string{"张伟-13800138000", "李娜-13900139000", "🙂-customer", "Zoë", "e\u0301"},
			host:  []string{"🙂-customer", "王芳-13700137000", "张伟-13800138000", "Zoë", "é"}},
		{name: "case folding", norm: psi.Normalization{Trim: true, CaseFold: true},
			guest: []string{"Alice@Example.COM", " bob@example.com", "ΣΊΣΥΦΟΣ", "Straße"},
			host:  []string{"alice@example.com", "BOB@example.com\t", "σίσυφος", "STRASSE"}},
		{name: "phones", norm: psi.Normalization{Trim: true, Phone: "86"},
			guest: []string{"138 0013 8000", "+86 139-0013-9000", "(010) 8888-1234", "+44 20 7946 0958"},
			host:  []string{"008613800138000", "13900139000", "+86 10 8888 1234", "020 7946 0958"}},
	}
}

// TestEqualsECDH runs KKRT and the ECDH protocol of package psi on the same
// sets in both modes KKRT supports: both must give each party exactly the
// same result, which must also be the plaintext reference.
func TestEqualsECDH(t *testing.T) {
	for _, c := range setCases() {
		for _, mode := range []psi.Mode{psi.ModeIntersection, psi.ModeBothLearn} {
			t.Run(c.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				session := []byte("kkrt-vs-ecdh/" + c.name + "/" + mode.String())
				s := psitest.Session{Guest: c.guest, Host: c.host, Config: psi.Config{
					Session: session, Mode: mode, Normalization: c.norm, BatchSize: c.batch, Window: c.window}}
				ecdh, err := psitest.Do(t.Context(), psi.ECDH{}, s, psitest.Options{})
				if err != nil {
					t.Fatalf("ecdh: %v", err)
				}
				cfg := kkrt.Config{Session: session, Mode: mode, Normalization: c.norm, BatchSize: c.batch, Window: c.window}
				got, _, err := runKKRT(t, cfg, c.guest, c.host, nil)
				if err != nil {
					t.Fatalf("kkrt: %v", err)
				}
				if err := psitest.Check(s, got); err != nil {
					t.Fatalf("kkrt differs from the plaintext reference: %v", err)
				}
				if !sameResult(got.Guest, ecdh.Guest) || !sameResult(got.Host, ecdh.Host) {
					t.Fatalf("kkrt %+v / %+v differs from ecdh %+v / %+v", got.Guest, got.Host, ecdh.Guest, ecdh.Host)
				}
			})
		}
	}
}

func sameResult(a, b psi.Result) bool {
	return a.Learned == b.Learned && a.Count == b.Count && a.PeerSize == b.PeerSize && slices.Equal(a.Indices, b.Indices)
}

// TestRandomSets compares KKRT with the plaintext reference on random sets
// of random sizes, small batches so that every size crosses batch
// boundaries differently.
func TestRandomSets(t *testing.T) {
	sizes := [][3]int{{1, 1, 1}, {2, 3, 1}, {127, 129, 50}, {128, 128, 128}, {5000, 17, 17}, {17, 5000, 3}, {16385, 9000, 4000}, {30000, 30000, 12345}}
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("n=%d m=%d common=%d", sz[0], sz[1], sz[2]), func(t *testing.T) {
			t.Parallel()
			g, h := psitest.Overlap(fmt.Sprint(sz), sz[0], sz[1], sz[2])
			s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Mode: psi.ModeBothLearn}}
			cfg := kkrt.Config{Session: []byte(fmt.Sprint("random", sz)), Mode: psi.ModeBothLearn, BatchSize: 1 + sz[0]%3000}
			got, _, err := runKKRT(t, cfg, g, h, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := psitest.Check(s, got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCardinalityRejected: KKRT cannot hide from the guest which of its
// elements matched, so it refuses cardinality-only sessions.
func TestCardinalityRejected(t *testing.T) {
	cfg := kkrt.Config{Session: []byte("s"), Mode: psi.ModeCardinality}
	if _, err := kkrt.NewGuestRole(cfg, nil); !errors.Is(err, kkrt.ErrUnsupportedMode) {
		t.Fatalf("guest: got %v, want ErrUnsupportedMode", err)
	}
	if _, err := kkrt.NewHost(cfg, nil); !errors.Is(err, kkrt.ErrUnsupportedMode) {
		t.Fatalf("host: got %v, want ErrUnsupportedMode", err)
	}
	// A host hello claiming cardinality mode is refused too.
	g, err := kkrt.NewGuest(kkrt.Config{Session: []byte("s"), Mode: psi.ModeIntersection}, [][]byte{[]byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Accept(kkrt.HostHello{Mode: psi.ModeCardinality}); !errors.Is(err, psi.ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
}

func TestSettingsMismatch(t *testing.T) {
	ids := [][]byte{[]byte("a"), []byte("b")}
	cases := []struct {
		name        string
		guest, host kkrt.Config
	}{
		{"mode", kkrt.Config{Session: []byte("s"), Mode: psi.ModeIntersection}, kkrt.Config{Session: []byte("s"), Mode: psi.ModeBothLearn}},
		{"normalisation", kkrt.Config{Session: []byte("s"), Mode: psi.ModeIntersection, Normalization: psi.Normalization{Trim: true}},
			kkrt.Config{Session: []byte("s"), Mode: psi.ModeIntersection}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := kkrt.NewGuestRole(c.guest, ids)
			if err != nil {
				t.Fatal(err)
			}
			h, err := kkrt.NewHostRole(c.host, ids)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exchange(t.Context(), g, h, nil); !errors.Is(err, psi.ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch", err)
			}
		})
	}
	t.Run("session", func(t *testing.T) {
		g, _ := kkrt.NewGuestRole(kkrt.Config{Session: []byte("one"), Mode: psi.ModeIntersection}, ids)
		h, _ := kkrt.NewHostRole(kkrt.Config{Session: []byte("two"), Mode: psi.ModeIntersection}, ids)
		if _, err := exchange(t.Context(), g, h, nil); !errors.Is(err, psi.ErrWrongSession) {
			t.Fatalf("got %v, want ErrWrongSession", err)
		}
	})
}

// TestWireBytes checks the traffic against the formula of the package
// documentation: rows of RowBytes for every bin, NumHashes tags per host
// element, plus headers, hellos and acknowledgements.
func TestWireBytes(t *testing.T) {
	const n, m = 20000, 15000
	g, h := psitest.Overlap("wire", n, m, 5000)
	cfg := kkrt.Config{Session: []byte("wire"), Mode: psi.ModeIntersection}
	_, st, err := runKKRT(t, cfg, g, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	bins := kkrt.Bins(n)
	tagLen := kkrt.TagBytes(n, m)
	extBatches := (bins + kkrt.DefaultBatchSize - 1) / kkrt.DefaultBatchSize
	tagBatches := (m + kkrt.DefaultBatchSize - 1) / kkrt.DefaultBatchSize
	up := int64(kkrt.HeaderBytes+kkrt.GuestHelloBytes) + int64(bins*kkrt.RowBytes) + int64(extBatches*kkrt.HeaderBytes) +
		int64(tagBatches*kkrt.HeaderBytes) + int64(kkrt.HeaderBytes+8)
	down := int64(kkrt.HeaderBytes+kkrt.HostHelloBytes) + int64(extBatches*kkrt.HeaderBytes) +
		int64(m*kkrt.NumHashes*tagLen) + int64(tagBatches*kkrt.HeaderBytes)
	if st.bytes[toHost] != up || st.bytes[toGuest] != down {
		t.Fatalf("traffic %d up, %d down; want %d, %d", st.bytes[toHost], st.bytes[toGuest], up, down)
	}
}

func TestErrorsNeverQuoteIdentifiers(t *testing.T) {
	secret := "+8613800138000-secret"
	cfg := kkrt.Config{Session: []byte("leak"), Mode: psi.ModeIntersection}
	_, _, err := runKKRT(t, cfg, []string{secret}, []string{secret}, func(dir direction, seq int, wire []byte) []byte {
		if dir == toGuest && seq == 1 {
			return wire[:len(wire)-1]
		}
		return wire
	})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("got %v", err)
	}
}
