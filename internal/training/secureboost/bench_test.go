package secureboost

import (
	"context"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// benchTrees times b.N trees of a federated run over in-memory pipes, from
// the end of the setup to the end of the last tree (package sbbench
// measures the same over mTLS on loopback).
func benchTrees(b *testing.B, gt *dataset.Table, hts []*dataset.Table) {
	cfg := DefaultConfig()
	cfg.Trees = b.N
	rec := NewRecorder(false)
	var start, stop int64
	var treeTime time.Duration
	gc := GuestConfig{
		Train:   cfg,
		Started: func() { start = rec.Total(); b.StartTimer() },
		Progress: func(p Progress) {
			treeTime += p.Duration
			if p.Stop {
				b.StopTimer()
				stop = rec.Total()
			}
		},
	}
	b.StopTimer()
	b.ResetTimer()
	if _, err := runFed(context.Background(), gt, hts, gc, fedOpts{wrap: func(h int, t Transport) Transport {
		return rec.Wrap(t, "host", GuestToHost)
	}}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(treeTime.Seconds()/float64(b.N), "s/tree")
	b.ReportMetric(float64(stop-start)/float64(b.N), "bytes/tree")
}

// BenchmarkTreeDefaultCredit: the bundled credit data, guest 13 features,
// one host with 10, default configuration.
func BenchmarkTreeDefaultCredit(b *testing.B) {
	gt, ht := credit(b)
	benchTrees(b, gt, []*dataset.Table{ht})
}

// BenchmarkHistogramCiphertext is a host's unit of work: one product
// (layout of a chunk of rows for a group of bins, its NTT, the
// multiply-add) and, per result, the re-randomised, flooded finish.
func BenchmarkHistogramCiphertext(b *testing.B) {
	s, err := newSuite(DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	bud, err := s.p.planBudget(20, 70000, 256, 0)
	if err != nil {
		b.Fatal(err)
	}
	s.setBudget(bud)
	kg := rlwe.NewKeyGenerator(s.params)
	sk := kg.GenSecretKeyNew()
	w, err := s.newWorker(kg.GenPublicKeyNew(sk))
	if err != nil {
		b.Fatal(err)
	}
	x := dataset.NewMatrix(256, 2)
	for i := range x.Data {
		x.Data[i] = float64(i * 7919 % 1000)
	}
	bn, _ := FitBinning(x, 32)
	m := bn.apply(x)
	rows := make([]int32, 256)
	for i := range rows {
		rows[i] = int32(i)
	}
	g := groups(m.layout(), s.perCt)[0]
	ct := rlwe.NewCiphertext(s.params, 1, s.top)
	out := make([]byte, 0, s.hresultBytes(g.hi-g.lo))
	b.Run("product", func(b *testing.B) {
		for range b.N {
			w.layout(w.pt, m, rows, g)
			w.accumulate(ct, w.pt)
		}
	})
	b.Run("finish", func(b *testing.B) {
		for range b.N {
			w.accumulate(ct, w.pt)
			out = w.finish(g.hi-g.lo, nil, out[:0])
		}
	})
}
