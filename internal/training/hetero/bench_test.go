package hetero

import (
	"context"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// benchEpochs times epochs of a federated run: the timer runs from the end
// of the setup (handshake, keys, per-batch constants) to the end of the
// b.N-th epoch. Guest and host share the machine, over in-memory pipes
// (the service's bench command adds mTLS on loopback).
func benchEpochs(b *testing.B, gt *dataset.Table, hts []*dataset.Table, cfg lr.Config) {
	cfg.Epochs = b.N
	cfg.Patience = 0
	rec := NewRecorder(false)
	total := func() int64 { return rec.Bytes(GuestToHost) + rec.Bytes(HostToGuest) }
	// Bytes are counted between the end of the setup and the end of the
	// last epoch: the final test scoring and finish messages are outside.
	var bytesAtStart, bytesAtStop int64
	var epochTime time.Duration
	gc := GuestConfig{
		Train: cfg,
		Split: dataset.DefaultSplit(),
		Started: func() {
			bytesAtStart = total()
			b.StartTimer()
		},
		Progress: func(p Progress) {
			epochTime += p.Duration
			if p.Stop {
				b.StopTimer()
				bytesAtStop = total()
			}
		},
	}
	b.StopTimer()
	b.ResetTimer()
	_, err := runFed(context.Background(), gt, hts, gc, fedOpts{wrap: func(h int, t Transport) Transport {
		return rec.Wrap(t, "host", GuestToHost)
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(epochTime.Seconds()/float64(b.N), "s/epoch")
	b.ReportMetric(float64(bytesAtStop-bytesAtStart)/float64(b.N), "bytes/epoch")
}

// BenchmarkEpochDefaultCredit: the bundled credit data, 30,000 rows split
// 70/10/20, guest 13 features (+ intercept), one host with 10, batches of
// 512, default parameters.
func BenchmarkEpochDefaultCredit(b *testing.B) {
	gt, ht := credit(b)
	benchEpochs(b, gt, []*dataset.Table{ht}, lr.DefaultConfig())
}

// BenchmarkEpochSynthetic100k: 100,000 synthetic rows, guest 30 features,
// one host with 300.
func BenchmarkEpochSynthetic100k(b *testing.B) {
	if testing.Short() {
		b.Skip("large benchmark")
	}
	gt, hts, _, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: 100_000, GuestFeatures: 30, HostFeatures: []int{300}, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	cfg := lr.DefaultConfig()
	benchEpochs(b, gt, hts, cfg)
}
