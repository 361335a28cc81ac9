package secureboost

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// creditTables loads the bundled credit data once per test binary, aligned
// on the id join.
var creditTables = sync.OnceValues(func() ([2]*dataset.Table, error) {
	dir := filepath.Join("..", "..", "..", "data")
	g, err := dataset.ReadFile(filepath.Join(dir, "default_credit_hetero_guest.csv"), true)
	if err != nil {
		return [2]*dataset.Table{}, err
	}
	h, err := dataset.ReadFile(filepath.Join(dir, "default_credit_hetero_host.csv"), false)
	if err != nil {
		return [2]*dataset.Table{}, err
	}
	ids := dataset.CommonIDs(g, h)
	if g, err = g.Align(ids); err != nil {
		return [2]*dataset.Table{}, err
	}
	if h, err = h.Align(ids); err != nil {
		return [2]*dataset.Table{}, err
	}
	return [2]*dataset.Table{g, h}, nil
})

func credit(tb testing.TB) (*dataset.Table, *dataset.Table) {
	tb.Helper()
	t, err := creditTables()
	if err != nil {
		tb.Fatalf("load the bundled credit data (data/ at the module root): %v", err)
	}
	return t[0], t[1]
}

// subset returns the first n rows of every table.
func subset(n int, ts ...*dataset.Table) []*dataset.Table {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	out := make([]*dataset.Table, len(ts))
	for k, t := range ts {
		out[k] = t.Rows(idx)
	}
	return out
}

// splitHost splits a host table's columns into two hosts.
func splitHost(t *dataset.Table, first int) (*dataset.Table, *dataset.Table) {
	var a, b []int
	for j := 0; j < t.X.Cols; j++ {
		if j < first {
			a = append(a, j)
		} else {
			b = append(b, j)
		}
	}
	return t.SelectFeatures(a), t.SelectFeatures(b)
}

type fedRun struct {
	guest *GuestModel
	hosts []*HostModel
}

// fedOpts are test hooks of runFed.
type fedOpts struct {
	wrap     func(h int, t Transport) Transport // wraps the guest's end of host h's pipe
	wrapHost func(h int, t Transport) Transport // wraps host h's end
	host     func(h int, c *HostConfig)         // adjusts host h's configuration
	tree     func(r *guestRun)                  // the guest's tree hook
	level    func(h int, hists []partyHist)     // the guest's histogram hook
}

// runFed trains with the guest and one host per table over in-memory
// pipes.
func runFed(ctx context.Context, gt *dataset.Table, hts []*dataset.Table, cfg GuestConfig, opts fedOpts) (fedRun, error) {
	peers := make([]HostPeer, len(hts))
	hosts := make([]*Host, len(hts))
	var closers []*PipeEnd
	for h, ht := range hts {
		a, b := Pipe(64)
		closers = append(closers, a)
		var t Transport = a
		if opts.wrap != nil {
			t = opts.wrap(h, a)
		}
		peers[h] = HostPeer{Name: fmt.Sprintf("host-%d", h), Transport: t}
		var ht2 Transport = b
		if opts.wrapHost != nil {
			ht2 = opts.wrapHost(h, b)
		}
		hc := HostConfig{Name: peers[h].Name}
		if opts.host != nil {
			opts.host(h, &hc)
		}
		host, err := NewHost(hc, ht, ht2)
		if err != nil {
			return fedRun{}, err
		}
		hosts[h] = host
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	guest, err := NewGuest(cfg, gt, peers)
	if err != nil {
		return fedRun{}, err
	}
	guest.treeHook, guest.levelHook = opts.tree, opts.level
	out := fedRun{hosts: make([]*HostModel, len(hts))}
	errs := make([]error, len(hts))
	var wg sync.WaitGroup
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.hosts[h], errs[h] = hosts[h].Run(ctx)
		}()
	}
	out.guest, err = guest.Run(ctx)
	if err != nil {
		for _, c := range closers {
			c.Close()
		}
	}
	wg.Wait()
	return out, errors.Join(append([]error{err}, errs...)...)
}

// servedLogits scores the test rows with the exported halves from raw
// features, as serving does: each host answers with its routing bits.
func servedLogits(tb testing.TB, run fedRun, gt *dataset.Table, hts []*dataset.Table, split dataset.Split) []float64 {
	tb.Helper()
	gtest := split.Apply(gt).Test
	htest := make([]*dataset.Table, len(hts))
	for h, ht := range hts {
		htest[h] = split.Apply(ht).Test
	}
	u := make([]float64, gtest.Len())
	for i := range u {
		routes := make([][]byte, len(hts))
		for h := range hts {
			r, err := run.hosts[h].Route(htest[h].X.Row(i))
			if err != nil {
				tb.Fatal(err)
			}
			routes[h] = r
		}
		v, err := run.guest.Logit(gtest.X.Row(i), routes)
		if err != nil {
			tb.Fatal(err)
		}
		u[i] = v
	}
	return u
}
