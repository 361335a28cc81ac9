package psi_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psitest"
)

const benchBatch = 4096

func benchIDs(n int) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "+86138%08d", i)
	}
	return ids
}

func perElement(b *testing.B, n int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*n)
	b.ReportMetric(ns, "ns/elem")
	b.ReportMetric(1e9/ns, "elems/s")
}

// BenchmarkHashAndBlind: a batch of 4096 identifiers on all cores.
func BenchmarkHashAndBlind(b *testing.B) {
	k := newKey(b)
	dst := psi.DST([]byte("bench"))
	ids := benchIDs(benchBatch)
	out := make([]byte, benchBatch*psi.PointBytes)
	for b.Loop() {
		if err := k.HashAndBlind(dst, ids, out); err != nil {
			b.Fatal(err)
		}
	}
	perElement(b, benchBatch)
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
}

// BenchmarkReblind: validating and re-blinding a batch of 4096 received
// points on all cores, to 10-byte tags and to full points.
func BenchmarkReblind(b *testing.B) {
	k := newKey(b)
	in := make([]byte, benchBatch*psi.PointBytes)
	if err := newKey(b).HashAndBlind(psi.DST([]byte("bench")), benchIDs(benchBatch), in); err != nil {
		b.Fatal(err)
	}
	for _, tagLen := range []int{10, 0} {
		b.Run(fmt.Sprintf("tag=%d", tagLen), func(b *testing.B) {
			width := tagLen
			if width == 0 {
				width = psi.PointBytes
			}
			out := make([]byte, benchBatch*width)
			for b.Loop() {
				if err := k.Reblind(in, tagLen, out); err != nil {
					b.Fatal(err)
				}
			}
			perElement(b, benchBatch)
		})
	}
}

// BenchmarkEndToEnd_2_16 runs a whole session, n = m = 65,536 with 30%
// overlap, both roles in this process (so they share the cores), every
// message through Encode and Decode.
func BenchmarkEndToEnd_2_16(b *testing.B) {
	const n = 1 << 16
	g, h := psitest.Overlap("bench", n, n, n*3/10)
	var st psitest.Stats
	for b.Loop() {
		s := psitest.Session{Guest: g, Host: h, Config: psi.Config{Session: []byte("bench"), Mode: psi.ModeIntersection}}
		o, err := psitest.Do(b.Context(), psi.ECDH{}, s, psitest.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if o.Guest.Count != n*3/10 {
			b.Fatalf("count %d", o.Guest.Count)
		}
		st = o.Stats
	}
	b.ReportMetric(float64(2*n)*float64(b.N)/b.Elapsed().Seconds(), "elems/s")
	b.ReportMetric(float64(st.TotalBytes), "wire-bytes")
	b.ReportMetric(float64(st.GuestToHostBytes), "up-bytes")
	b.ReportMetric(float64(st.HostToGuestBytes), "down-bytes")
}

// BenchmarkMatcher_2_20 fills a Matcher with 2^20 ten-byte tags and
// reports the heap it holds.
func BenchmarkMatcher_2_20(b *testing.B) {
	const n = 1 << 20
	tags := make([]byte, n*10)
	for i := range n {
		copy(tags[i*10:], fmt.Appendf(nil, "%010d", i))
	}
	var heap uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := psi.NewMatcher(10, n)
		for start := 0; start < n; start += 1 << 14 {
			m.AddGuest(start, tags[start*10:(start+1<<14)*10])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(m)
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	perElement(b, n)
}
