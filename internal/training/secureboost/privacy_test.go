package secureboost

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// patterns is a set of 8-byte encodings of secret values, for searching
// payloads at every byte offset.
type patterns map[uint64]string

// addFloat adds v as a little- and big-endian float64, unless it is too
// regular to be distinctive (0, ±1, 0.5, small integers...).
func (p patterns) addFloat(v float64, what string) {
	b := math.Float64bits(v)
	if b&(1<<28-1) == 0 {
		return
	}
	p.addWord(b, what)
}

// addInt adds v as a little- and big-endian int64 unless it is small
// (|v| < 2^16: such words occur in any structured payload).
func (p patterns) addInt(v int64, what string) {
	if v > -1<<16 && v < 1<<16 {
		return
	}
	p.addWord(uint64(v), what)
}

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

const runLen = 24

// runs holds byte sequences of runLen bytes (labels one per byte, a
// host's bins one per byte) that must not appear.
type runs map[string]string

func (r runs) add(b []byte, what string) {
	for s := 0; s+runLen <= len(b); s++ {
		w := b[s : s+runLen]
		distinct := map[byte]bool{}
		for _, c := range w {
			distinct[c] = true
		}
		if len(distinct) > 1 { // constant runs are too regular
			r[string(w)] = fmt.Sprintf("%s at %d", what, s)
		}
	}
}

func (r runs) find(b []byte) (string, bool) {
	for i := 0; i+runLen <= len(b); i++ {
		if what, ok := r[string(b[i:i+runLen])]; ok {
			return what, true
		}
	}
	return "", false
}

// addLabels adds every 64-label window of y as packed bits in both bit
// orders and every window as bytes.
func addLabels(p patterns, rs runs, y []float64, who string) {
	for s := 0; s+64 <= len(y); s += 8 {
		var lsb, msb uint64
		for k := 0; k < 64; k++ {
			if y[s+k] == 1 {
				lsb |= 1 << k
				msb |= 1 << (63 - k)
			}
		}
		p.addWord(lsb, who+" labels packed")
		p.addWord(msb, who+" labels packed")
	}
	b := make([]byte, len(y))
	for i, v := range y {
		b[i] = byte(v)
	}
	rs.add(b, who+" labels")
}

// TestRecordedMessagesCarryNoPlaintext records every message of a run with
// two hosts and checks, by type and by searching every payload at every
// byte offset, that no host receives a label, a gradient or hessian (as
// float, fixed point or packed plaintext residue) or a guest feature, and
// the guest never receives a host's raw feature, threshold, bin index or
// plaintext bin sum.
func TestRecordedMessagesCarryNoPlaintext(t *testing.T) {
	gfull, hfull := credit(t)
	tabs := subset(3000, gfull, hfull)
	gt := tabs[0]
	h0, h1 := splitHost(tabs[1], 6)
	hts := []*dataset.Table{h0, h1}
	split := dataset.DefaultSplit()
	cfg := DefaultConfig()
	cfg.Trees = 3
	cfg.Subsample = 0.8

	guestSecrets, hostSecrets := patterns{}, patterns{}
	guestRuns, hostRuns := runs{}, runs{}
	for i := 0; i < gt.Len(); i++ {
		for j, v := range gt.X.Row(i) {
			guestSecrets.addFloat(v, fmt.Sprintf("guest x[%d,%d]", i, j))
		}
	}
	addLabels(guestSecrets, guestRuns, gt.Labels, "aligned")
	addLabels(guestSecrets, guestRuns, split.Apply(gt).Train.Labels, "training")
	var hostCuts []float64
	for h, ht := range hts {
		for i := 0; i < ht.Len(); i++ {
			for j, v := range ht.X.Row(i) {
				hostSecrets.addFloat(v, fmt.Sprintf("host %d x[%d,%d]", h, i, j))
			}
		}
		train := split.Apply(ht).Train
		bn, err := FitBinning(train.X, cfg.Bins)
		if err != nil {
			t.Fatal(err)
		}
		m := bn.apply(train.X)
		for j := 0; j < m.cols; j++ {
			hostRuns.add(m.col(j), fmt.Sprintf("host %d bins of feature %d", h, j))
			for _, c := range bn.Cuts[j] {
				hostSecrets.addFloat(c, fmt.Sprintf("host %d threshold of feature %d", h, j))
				hostCuts = append(hostCuts, c)
			}
		}
	}
	rec := NewRecorder(true)
	var mu sync.Mutex
	opts := fedOpts{
		wrap: func(h int, tr Transport) Transport { return rec.Wrap(tr, fmt.Sprintf("host-%d", h), GuestToHost) },
		tree: func(r *guestRun) {
			mu.Lock()
			defer mu.Unlock()
			b := r.b
			for i := range b.g {
				guestSecrets.addFloat(b.g[i], fmt.Sprintf("gradient of row %d", i))
				guestSecrets.addFloat(b.h[i], fmt.Sprintf("hessian of row %d", i))
				guestSecrets.addFloat(b.F[i], fmt.Sprintf("score of row %d", i))
				guestSecrets.addInt(b.gq[i], fmt.Sprintf("fixed-point gradient of row %d", i))
				guestSecrets.addInt(b.hq[i], fmt.Sprintf("fixed-point hessian of row %d", i))
				if r.s.bud.Alpha > 0 {
					for j := range r.s.p.Q {
						guestSecrets.addWord(r.s.packed(b.gq[i], b.hq[i], j), fmt.Sprintf("packed plaintext of row %d", i))
					}
				}
			}
		},
		level: func(h int, hists []partyHist) {
			mu.Lock()
			defer mu.Unlock()
			for _, ph := range hists {
				for k := range ph.G {
					hostSecrets.addInt(ph.G[k], fmt.Sprintf("host %d bin sum G", h))
					hostSecrets.addInt(ph.H[k], fmt.Sprintf("host %d bin sum H", h))
				}
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := runFed(ctx, gt, hts, GuestConfig{Train: cfg, Split: split}, opts)
	if err != nil {
		t.Fatal(err)
	}

	// The detectors work.
	probe := binary.LittleEndian.AppendUint64([]byte{1, 2, 3}, math.Float64bits(gt.X.At(5, 3)))
	if _, _, ok := guestSecrets.find(probe); !ok {
		t.Fatal("the search misses a planted feature")
	}
	train := split.Apply(h1).Train
	bn, _ := FitBinning(train.X, cfg.Bins)
	if _, ok := hostRuns.find(append([]byte{9, 9}, bn.apply(train.X).col(2)[100:100+runLen]...)); !ok {
		t.Fatal("the search misses planted bins")
	}

	toHost := map[MsgType]bool{MsgHello: true, MsgSetup: true, MsgPublicKey: true, MsgGradients: true, MsgSplits: true,
		MsgTreeDone: true, MsgTreeEnd: true, MsgFinish: true}
	toGuest := map[MsgType]bool{MsgHelloReply: true, MsgHistograms: true, MsgSplitReply: true, MsgRoutes: true,
		MsgTestRoutes: true, MsgFinishReply: true}
	records := rec.Records()
	var bytesTo [3]int
	types := map[MsgType]int{}
	for _, r := range records {
		bytesTo[r.Direction] += len(r.Wire)
		types[r.Message.Type]++
		allowed, secrets, rs := toHost, guestSecrets, guestRuns
		if r.Direction == HostToGuest {
			allowed, secrets, rs = toGuest, hostSecrets, hostRuns
		}
		if !allowed[r.Message.Type] {
			t.Errorf("%s %s: a message of this type may not go this way", r.Direction, r.Message)
		}
		if what, at, ok := secrets.find(r.Wire); ok {
			t.Errorf("%s %s %s: carries %s at byte %d", r.Direction, r.Peer, r.Message, what, at)
		}
		if what, ok := rs.find(r.Wire); ok {
			t.Errorf("%s %s %s: carries %s", r.Direction, r.Peer, r.Message, what)
		}
	}
	for _, typ := range []MsgType{MsgGradients, MsgHistograms, MsgSplits, MsgSplitReply, MsgRoutes, MsgTestRoutes} {
		if types[typ] == 0 {
			t.Errorf("no %s message: the run does not exercise the protocol", typ)
		}
	}
	// The guest's exported half holds no host threshold.
	doc, err := run.guest.Export()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range hostCuts {
		if s := strconv.FormatFloat(c, 'g', -1, 64); len(s) > 4 && strings.Contains(string(doc), s) {
			t.Errorf("the guest's half contains the host threshold %s", s)
		}
	}
	t.Logf("searched %d messages (%d bytes to hosts, %d to the guest) for %d guest and %d host patterns, %d+%d byte runs",
		len(records), bytesTo[GuestToHost], bytesTo[HostToGuest], len(guestSecrets), len(hostSecrets), len(guestRuns), len(hostRuns))
}
