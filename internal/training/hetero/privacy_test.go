package hetero

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// patterns is a set of 8-byte encodings of secret values, for searching
// payloads at every byte offset.
type patterns map[uint64]string

// addFloat adds v as a little- and big-endian float64, unless it is too
// regular to be distinctive (0, ±1, 0.5, small integers...).
func (p patterns) addFloat(v float64, what string) {
	b := math.Float64bits(v)
	if b&(1<<28-1) == 0 { // fewer than ~24 significant mantissa bits
		return
	}
	p[b] = what
	p[bits.ReverseBytes64(b)] = what
}

// addWord adds an 8-byte sequence read little-endian, in both byte orders.
func (p patterns) addWord(w uint64, what string) {
	p[w] = what
	p[bits.ReverseBytes64(w)] = what
}

// find returns the first pattern found in b.
func (p patterns) find(b []byte) (string, int, bool) {
	for i := 0; i+8 <= len(b); i++ {
		if what, ok := p[binary.LittleEndian.Uint64(b[i:])]; ok {
			return what, i, true
		}
	}
	return "", 0, false
}

// addTable adds a table's raw and standardised features, and its
// fixed-point features as pairs of adjacent int32 (row- and column-wise).
func (p patterns) addTable(t *dataset.Table, split dataset.Split, frac int, who string) {
	for i := 0; i < t.Len(); i++ {
		for j, v := range t.X.Row(i) {
			p.addFloat(v, fmt.Sprintf("%s raw x[%d,%d]", who, i, j))
		}
	}
	parts, _ := dataset.Standardise(split.Apply(t))
	for _, part := range []*dataset.Table{parts.Train, parts.Validation, parts.Test} {
		q := func(i, j int) uint32 {
			v, _ := quantize(part.X.At(i, j), frac, 62)
			return uint32(int32(v))
		}
		for i := 0; i < part.Len(); i++ {
			for j, v := range part.X.Row(i) {
				p.addFloat(v, fmt.Sprintf("%s standardised x[%d,%d]", who, i, j))
				if j+1 < part.X.Cols {
					p.addWord(uint64(q(i, j))|uint64(q(i, j+1))<<32, fmt.Sprintf("%s fixed-point x[%d,%d:%d]", who, i, j, j+2))
				}
				if i+1 < part.Len() {
					p.addWord(uint64(q(i, j))|uint64(q(i+1, j))<<32, fmt.Sprintf("%s fixed-point x[%d:%d,%d]", who, i, i+2, j))
				}
			}
		}
	}
}

// addLabels adds every 64-label window of y (in the given row order) as
// packed bits in both bit orders, and every 32-label window as bytes (one
// per label) to runs.
func (p patterns) addLabels(y []float64, runs map[string]string, who string) {
	for s := 0; s+64 <= len(y); s += 8 {
		var lsb, msb uint64
		for k := 0; k < 64; k++ {
			if y[s+k] == 1 {
				lsb |= 1 << k
				msb |= 1 << (63 - k)
			}
		}
		p.addWord(lsb, fmt.Sprintf("%s labels %d.. packed", who, s))
		p.addWord(msb, fmt.Sprintf("%s labels %d.. packed", who, s))
	}
	for s := 0; s+labelRun <= len(y); s++ {
		b := make([]byte, labelRun)
		for k := range b {
			b[k] = byte(y[s+k])
		}
		runs[string(b)] = fmt.Sprintf("%s labels %d.. as bytes", who, s)
	}
}

const labelRun = 32

// findLabelRun looks for a run of labelRun bytes in {0, 1} that is a window
// of the labels.
func findLabelRun(b []byte, runs map[string]string) (string, bool) {
	n := 0
	for i, c := range b {
		if c > 1 {
			n = 0
			continue
		}
		n++
		if n >= labelRun {
			if what, ok := runs[string(b[i+1-labelRun:i+1])]; ok {
				return what, true
			}
		}
	}
	return "", false
}

// TestRecordedMessagesCarryNoPlaintext records every message of a run and
// checks, by type and by searching every payload at every byte offset,
// that the host never receives the labels, the guest's features or the
// guest's weights, and the guest never receives a host's features or
// weights.
func TestRecordedMessagesCarryNoPlaintext(t *testing.T) {
	gfull, hfull := credit(t)
	tabs := subset(3000, gfull, hfull)
	gt := tabs[0]
	h0, h1 := splitHost(tabs[1], 6)
	hts := []*dataset.Table{h0, h1}
	split := dataset.DefaultSplit()
	cfg := lr.DefaultConfig()
	cfg.Epochs, cfg.Patience = 2, 0

	guestSecrets, hostSecrets := patterns{}, patterns{}
	p := DefaultParams(1)
	guestSecrets.addTable(gt, split, p.FeatureBits, "guest")
	labelRuns := map[string]string{}
	guestSecrets.addLabels(gt.Labels, labelRuns, "guest (aligned order)")
	parts := split.Apply(gt)
	guestSecrets.addLabels(parts.Train.Labels, labelRuns, "guest (training order)")
	plan, _ := lr.NewPlan(parts.Train.Len(), cfg.BatchSize, cfg.Seed)
	for k := 0; k < plan.Batches(); k++ {
		y := make([]float64, 0, cfg.BatchSize)
		for _, i := range plan.Batch(k) {
			y = append(y, parts.Train.Labels[i])
		}
		guestSecrets.addLabels(y, labelRuns, fmt.Sprintf("guest (batch %d)", k))
	}
	for h, ht := range hts {
		hostSecrets.addTable(ht, split, p.FeatureBits, fmt.Sprintf("host %d", h))
	}
	rec := NewRecorder(true)
	steps := 0
	var mu sync.Mutex // the hosts' hooks run concurrently
	opts := fedOpts{
		wrap: func(h int, tr Transport) Transport { return rec.Wrap(tr, fmt.Sprintf("host-%d", h), GuestToHost) },
		guestStep: func(w []float64, bias float64) {
			steps++
			for j, v := range w {
				guestSecrets.addFloat(v, fmt.Sprintf("guest weight %d after step %d", j, steps))
			}
			guestSecrets.addFloat(bias, fmt.Sprintf("guest bias after step %d", steps))
		},
		hostStep: func(h int, w []float64) {
			mu.Lock()
			defer mu.Unlock()
			for j, v := range w {
				hostSecrets.addFloat(v, fmt.Sprintf("host %d weight %d", h, j))
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := runFed(ctx, gt, hts, GuestConfig{Train: cfg, Split: split}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, hm := range run.hosts {
		for j, v := range hm.Weights {
			hostSecrets.addFloat(v, fmt.Sprintf("host final weight %d", j))
		}
	}

	// The detector works: a payload with a secret in it is caught.
	probe := binary.LittleEndian.AppendUint64([]byte{1, 2, 3}, math.Float64bits(parts.Train.X.At(5, 3)))
	if _, _, ok := guestSecrets.find(probe); !ok {
		t.Fatal("the search misses a planted raw value")
	}
	probe = make([]byte, 40)
	for k := range labelRun {
		probe[4+k] = byte(parts.Train.Labels[10+k])
	}
	if _, ok := findLabelRun(probe, labelRuns); !ok {
		t.Fatal("the search misses planted labels")
	}

	toHost := map[MsgType]bool{MsgHello: true, MsgPublicKey: true, MsgHostKeys: true, MsgSeedShare: true, MsgConstants: true,
		MsgResidual: true, MsgDecrypted: true, MsgEpochEnd: true, MsgFinish: true}
	toGuest := map[MsgType]bool{MsgHelloReply: true, MsgSeedShare: true, MsgReady: true, MsgScores: true, MsgGuestTerm: true,
		MsgGradient: true, MsgEvalScores: true, MsgFinishReply: true}
	records := rec.Records()
	var bytesTo [3]int
	for _, r := range records {
		bytesTo[r.Direction] += len(r.Wire)
		allowed, secrets := toHost, guestSecrets
		if r.Direction == HostToGuest {
			allowed, secrets = toGuest, hostSecrets
		}
		if !allowed[r.Message.Type] {
			t.Errorf("%s %s: a message of this type may not go this way", r.Direction, r.Message)
		}
		if what, at, ok := secrets.find(r.Wire); ok {
			t.Errorf("%s to %s %s: carries %s at byte %d", r.Direction, r.Peer, r.Message, what, at)
		}
		if r.Direction == GuestToHost {
			if what, ok := findLabelRun(r.Wire, labelRuns); ok {
				t.Errorf("%s to %s %s: carries %s", r.Direction, r.Peer, r.Message, what)
			}
		}
	}
	if len(records) < 50 || bytesTo[GuestToHost] == 0 || bytesTo[HostToGuest] == 0 {
		t.Fatalf("recorded only %d messages", len(records))
	}
	t.Logf("searched %d messages (%d bytes to hosts, %d to the guest) for %d guest and %d host patterns",
		len(records), bytesTo[GuestToHost], bytesTo[HostToGuest], len(guestSecrets), len(hostSecrets))
}
