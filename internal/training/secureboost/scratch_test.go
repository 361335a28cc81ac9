package secureboost

import (
	"context"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

func TestScratchFull(t *testing.T) {
	g, h := credit(t)
	rec := NewRecorder(false)
	start := time.Now()
	var last time.Time
	tc := DefaultConfig(); tc.Trees = 8; cfg := GuestConfig{Train: tc, Started: func() { last = time.Now(); t.Logf("setup %v", time.Since(start)) },
		Progress: func(p Progress) { t.Logf("tree %d %.3fs val auc %.4f bytes %d host splits %d", p.Tree, time.Since(last).Seconds(), p.Validation.AUC, rec.Total(), p.HostSplits); last = time.Now() }}
	run, err := runFed(context.Background(), g, []*dataset.Table{h}, cfg, fedOpts{wrap: func(h int, tr Transport) Transport { return rec.Wrap(tr, "h", GuestToHost) }})
	if err != nil { t.Fatal(err) }
	t.Logf("total %v test auc %.4f bytes %d", time.Since(start), run.guest.Metrics.Test.AUC, rec.Total())
}
