package kkrt_test

import (
	"fmt"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
)

// benchIDs returns n identifiers, the first common of them shared with
// the other side ("c" prefix), the rest the side's own.
func benchIDs(side string, n, common int) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		if i < common {
			ids[i] = fmt.Appendf(nil, "c%010d", i)
		} else {
			ids[i] = fmt.Appendf(nil, "%s%010d", side, i)
		}
	}
	return ids
}

func benchSession(b *testing.B, n int) {
	g, h := benchIDs("g", n, n/2), benchIDs("h", n, n/2)
	var st stats
	for b.Loop() {
		cfg := kkrt.Config{Session: []byte("bench"), Mode: psi.ModeIntersection}
		gr, err := kkrt.NewGuestRole(cfg, g)
		if err != nil {
			b.Fatal(err)
		}
		hr, err := kkrt.NewHostRole(cfg, h)
		if err != nil {
			b.Fatal(err)
		}
		if st, err = exchange(b.Context(), gr, hr, nil); err != nil {
			b.Fatal(err)
		}
		res, err := gr.Result()
		if err != nil || res.Count != n/2 {
			b.Fatalf("count %d, %v", res.Count, err)
		}
	}
	b.ReportMetric(float64(st.total()), "wire-bytes")
	b.ReportMetric(float64(2*n)*float64(b.N)/b.Elapsed().Seconds(), "elems/s")
}

// BenchmarkSession_2_16 and _2_20: a whole session, both roles in this
// process (sharing the cores), messages through Encode and Decode.
func BenchmarkSession_2_16(b *testing.B) { benchSession(b, 1<<16) }
func BenchmarkSession_2_20(b *testing.B) { benchSession(b, 1<<20) }
