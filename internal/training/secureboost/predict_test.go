package secureboost

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// chachaReader is a deterministic byte source for randomised-response tests.
type chachaReader struct{ c *mrand.ChaCha8 }

func (r chachaReader) Read(b []byte) (int, error) { return r.c.Read(b) }

func smallRun(t *testing.T) (fedRun, *dataset.Table, *dataset.Table) {
	t.Helper()
	g, h := credit(t)
	ts := subset(3000, g, h)
	cfg := DefaultConfig()
	cfg.Trees = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := runFed(ctx, ts[0], ts[1:], GuestConfig{Train: cfg, ModelID: "credit", Version: "7"}, fedOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if run.guest.Hosts[0].Splits == 0 {
		t.Fatal("no host split")
	}
	return run, ts[0], ts[1]
}

// TestRouteRoundTrip scores through the serving messages: request,
// answer, JSON both ways, checked against the guest's half.
func TestRouteRoundTrip(t *testing.T) {
	run, gt, ht := smallRun(t)
	gm, hm := run.guest, run.hosts[0]
	reqb, _ := json.Marshal(RouteRequest{ModelID: gm.ModelID, Version: gm.Version})
	req, err := DecodeRouteRequest(reqb)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		ans, err := hm.Answer(req, ht.X.Row(i), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ans)
		back, err := DecodeRouteResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		bits, err := gm.Routes(0, back)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gm.Logit(gt.X.Row(i), [][]byte{bits})
		if err != nil {
			t.Fatal(err)
		}
		e, err := gm.Explain(gt.X.Row(i), [][]byte{bits})
		if err != nil {
			t.Fatal(err)
		}
		sum := e.Bias + e.Hosts[0]
		for _, v := range e.Guest {
			sum += v
		}
		if d := sum - got; d > 1e-9 || d < -1e-9 {
			t.Fatalf("row %d: explanation sums to %v, logit %v", i, sum, got)
		}
	}
	if _, err := hm.Answer(RouteRequest{ModelID: "other", Version: "7"}, ht.X.Row(0), 0, nil); !errors.Is(err, ErrMismatch) {
		t.Errorf("a request for another model: %v", err)
	}
	wrong := RouteResponse{ModelID: gm.ModelID, Version: gm.Version, Splits: gm.Hosts[0].Splits + 1, Bits: make([]byte, (gm.Hosts[0].Splits+8)/8)}
	if _, err := gm.Routes(0, wrong); !errors.Is(err, ErrMismatch) {
		t.Errorf("an answer with another split count: %v", err)
	}
}

// TestRouteRandomised: with a huge ε randomised response is the exact
// answer; with a small one each feature's interval is kept with
// probability e^ε/(e^ε+k−1) and the bits stay consistent.
func TestRouteRandomised(t *testing.T) {
	run, _, ht := smallRun(t)
	hm := run.hosts[0]
	cuts := hm.featureCuts()
	for i := 0; i < 20; i++ {
		want, _ := hm.Route(ht.X.Row(i))
		got, err := hm.RouteRandomised(ht.X.Row(i), 60, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("row %d: ε = 60 changed the bits", i)
		}
	}
	src := chachaReader{mrand.NewChaCha8([32]byte{7})}
	const eps, draws = 1.0, 4000
	kept, total := 0, 0
	x := ht.X.Row(3)
	exact, _ := hm.Route(x)
	for range draws {
		got, err := hm.RouteRandomised(x, eps, src)
		if err != nil {
			t.Fatal(err)
		}
		// Per feature, count the answers equal to the exact one.
		for f := range cuts {
			same := true
			for k, s := range hm.Splits {
				if s.Feature == f {
					same = same && bit(got, k) == bit(exact, k)
				}
			}
			total++
			if same {
				kept++
			}
		}
	}
	// Expected fraction: the mean over features of e^ε/(e^ε+k−1)
	// (distinct intervals differ at some threshold, so another interval
	// never gives the exact bits).
	var want float64
	for _, c := range cuts {
		k := float64(len(c) + 1)
		want += 1 / (1 + (k-1)*math.Exp(-eps))
	}
	want /= float64(len(cuts))
	got := float64(kept) / float64(total)
	if d := got - want; d > 0.03 || d < -0.03 {
		t.Errorf("kept %.3f of feature answers, want %.3f", got, want)
	}
	if c := hm.RouteCost(eps); c != eps*float64(len(cuts)) {
		t.Errorf("cost %v", c)
	}
}
