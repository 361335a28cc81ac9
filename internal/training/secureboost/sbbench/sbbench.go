// Package sbbench measures hetero SecureBoost training the way the bench
// command reports it.
//
// The guest and every host run in their own goroutines, each pair over its
// own mutually authenticated TLS 1.3 connection on 127.0.0.1 (certificates
// from a throwaway development CA), the protocol's messages counted at the
// guest, and the plaintext oracle trained on the joined data in the same run
// for auc_centralized.
package sbbench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fedrisk/fedrisk/data"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/secureboost"
)

// Result holds the JSON fields of `bench train --algo hetero-secureboost`:
// the LR bench's fields, then trees, seconds_per_tree and bytes_per_tree,
// then details.
type Result struct {
	Rows           int     `json:"rows"`
	FeaturesGuest  int     `json:"features_guest"`
	FeaturesHost   int     `json:"features_host"`
	AUCFederated   float64 `json:"auc_federated"`
	AUCCentralized float64 `json:"auc_centralized"`
	BytesTotal     int64   `json:"bytes_total"`
	WallSeconds    float64 `json:"wall_seconds"`
	Trees          int     `json:"trees"`
	SecondsPerTree float64 `json:"seconds_per_tree"`
	BytesPerTree   int64   `json:"bytes_per_tree"`

	// SetupSeconds is the handshake and key generation before tree 0.
	SetupSeconds float64 `json:"setup_seconds"`
	// CPUSeconds is the process's user+system CPU time during the
	// federated run (both parties: they share the process).
	CPUSeconds float64 `json:"cpu_seconds"`
	// WireBytes counts the TLS records on the connections (both ways).
	WireBytes int64 `json:"wire_bytes"`
	// Hosts is the number of hosts; FeaturesHost sums their features.
	Hosts     int    `json:"hosts"`
	Cores     int    `json:"cores"`
	Transport string `json:"transport"`
	// The plaintext ablations, when asked for: the same algorithm on the
	// guest's features alone and on the hosts' features alone.
	AUCGuestOnly *float64 `json:"auc_guest_only,omitempty"`
	AUCHostOnly  *float64 `json:"auc_host_only,omitempty"`
	// AUCRouting is the federated model's test AUC when every host
	// answers through randomised response with the given per-feature ε,
	// and RoutingCost the ε one answer then spends (per host).
	AUCRouting []RoutingAUC `json:"auc_routing,omitempty"`
}

// RoutingAUC is the test AUC under randomised routing answers.
type RoutingAUC struct {
	Epsilon float64 `json:"epsilon_per_feature"`
	Cost    float64 `json:"epsilon_per_answer"`
	AUC     float64 `json:"auc"`
}

// Options configure a run.
type Options struct {
	// Config are the hyper-parameters (zero: secureboost.DefaultConfig()).
	Config secureboost.Config
	// Split is the split (zero: dataset.DefaultSplit()).
	Split dataset.Split
	// Ablations also trains the plaintext guest-only and host-only models.
	Ablations bool
	// Plain uses in-memory pipes instead of TLS connections.
	Plain bool
	// RoutingEpsilons, if set, also scores the test rows through
	// randomised routing answers with each per-feature ε.
	RoutingEpsilons []float64
	// Progress, if set, receives one line per tree.
	Progress io.Writer
}

// CreditTables returns the bundled default-credit tables, aligned.
func CreditTables() (guest, host *dataset.Table, err error) {
	fsys := data.FS()
	read := func(name string, labelled bool) (*dataset.Table, error) {
		f, err := fsys.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return dataset.ReadCSV(f, labelled)
	}
	if guest, err = read(data.GuestFile, true); err != nil {
		return nil, nil, err
	}
	if host, err = read(data.HostFile, false); err != nil {
		return nil, nil, err
	}
	ids := dataset.CommonIDs(guest, host)
	if guest, err = guest.Align(ids); err != nil {
		return nil, nil, err
	}
	if host, err = host.Align(ids); err != nil {
		return nil, nil, err
	}
	return guest, host, nil
}

// SyntheticTables returns dataset.Synthetic's guest and one host.
func SyntheticTables(rows, guestFeatures, hostFeatures int, seed uint64) (*dataset.Table, *dataset.Table, error) {
	g, hs, _, err := dataset.Synthetic(dataset.SyntheticConfig{Rows: rows, GuestFeatures: guestFeatures, HostFeatures: []int{hostFeatures}, Seed: seed})
	if err != nil {
		return nil, nil, err
	}
	return g, hs[0], nil
}

// Run trains federated on guest and hosts (aligned tables) and the
// plaintext oracle on their join, and returns the measurements.
func Run(ctx context.Context, guest *dataset.Table, hosts []*dataset.Table, o Options) (Result, error) {
	if o.Config == (secureboost.Config{}) {
		o.Config = secureboost.DefaultConfig()
	}
	if o.Split == (dataset.Split{}) {
		o.Split = dataset.DefaultSplit()
	}
	res := Result{Rows: guest.Len(), FeaturesGuest: len(guest.Features), Hosts: len(hosts), Cores: runtime.GOMAXPROCS(0), Transport: "mtls-loopback"}
	if o.Plain {
		res.Transport = "pipe"
	}
	for _, h := range hosts {
		res.FeaturesHost += len(h.Features)
	}
	links, err := connect(ctx, len(hosts), o.Plain)
	if err != nil {
		return res, err
	}
	defer links.close()

	rec := secureboost.NewRecorder(false)
	peers := make([]secureboost.HostPeer, len(hosts))
	for h := range hosts {
		peers[h] = secureboost.HostPeer{Name: fmt.Sprintf("host-%d", h), Transport: rec.Wrap(links.guest[h], fmt.Sprintf("host-%d", h), secureboost.GuestToHost)}
	}
	var (
		started    time.Time
		bytesStart int64
		lastTree   time.Time
		bytesLast  int64
		trees      int
	)
	cpu0 := cpuSeconds()
	begin := time.Now()
	gc := secureboost.GuestConfig{
		ModelID: "bench", Train: o.Config, Split: o.Split,
		Started: func() { started, bytesStart = time.Now(), rec.Total() },
		Progress: func(p secureboost.Progress) {
			trees = p.Tree + 1
			lastTree, bytesLast = time.Now(), rec.Total()
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "tree %d/%d: %.2fs, validation AUC %.4f, %d host splits, %.1f MB so far\n",
					p.Tree+1, p.Trees, p.Duration.Seconds(), p.Validation.AUC, p.HostSplits, float64(rec.Total())/1e6)
			}
		},
	}
	g, err := secureboost.NewGuest(gc, guest, peers)
	if err != nil {
		return res, err
	}
	hostErrs := make([]error, len(hosts))
	hostModels := make([]*secureboost.HostModel, len(hosts))
	var wg sync.WaitGroup
	for h, ht := range hosts {
		hs, err := secureboost.NewHost(secureboost.HostConfig{Name: peers[h].Name}, ht, links.host[h])
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hostModels[h], hostErrs[h] = hs.Run(ctx)
		}()
	}
	gm, gerr := g.Run(ctx)
	if gerr != nil {
		links.close() // unblock the hosts
	}
	wg.Wait()
	if err := errors.Join(append([]error{gerr}, hostErrs...)...); err != nil {
		return res, err
	}
	res.WallSeconds = time.Since(begin).Seconds()
	res.CPUSeconds = cpuSeconds() - cpu0
	res.WireBytes = links.wire.Load()
	res.AUCFederated = gm.Metrics.Test.AUC
	res.BytesTotal = rec.Total()
	res.Trees = trees
	res.SetupSeconds = started.Sub(begin).Seconds()
	if trees > 0 {
		res.SecondsPerTree = lastTree.Sub(started).Seconds() / float64(trees)
		res.BytesPerTree = (bytesLast - bytesStart) / int64(trees)
	}
	if o.Progress != nil {
		fmt.Fprintln(o.Progress, "training the centralised oracle")
	}
	_, cm, err := secureboost.Centralized(ctx, guest, hosts, o.Split, o.Config)
	if err != nil {
		return res, err
	}
	res.AUCCentralized = cm.AUC
	for _, eps := range o.RoutingEpsilons {
		ra, err := routingAUC(gm, hostModels, guest, hosts, o.Split, eps)
		if err != nil {
			return res, err
		}
		res.AUCRouting = append(res.AUCRouting, ra)
	}
	if o.Ablations {
		gonly, honly, err := Ablations(ctx, guest, hosts, o.Split, o.Config)
		if err != nil {
			return res, err
		}
		res.AUCGuestOnly, res.AUCHostOnly = &gonly, &honly
	}
	return res, nil
}

// Ablations trains the plaintext model on the guest's features alone and
// on the hosts' features alone (with the guest's labels) and returns their
// test AUCs.
func Ablations(ctx context.Context, guest *dataset.Table, hosts []*dataset.Table, split dataset.Split, cfg secureboost.Config) (guestOnly, hostOnly float64, err error) {
	var m lr.Metrics
	if _, m, err = secureboost.Centralized(ctx, guest, nil, split, cfg); err != nil {
		return 0, 0, err
	}
	guestOnly = m.AUC
	joined, err := secureboost.Join(&dataset.Table{IDs: guest.IDs, Labels: guest.Labels, X: dataset.NewMatrix(guest.Len(), 0)}, hosts...)
	if err != nil {
		return 0, 0, err
	}
	if _, m, err = secureboost.Centralized(ctx, joined, nil, split, cfg); err != nil {
		return 0, 0, err
	}
	return guestOnly, m.AUC, nil
}

// routingAUC scores the test rows with every host answering through
// randomised response (crypto/rand) with per-feature ε.
func routingAUC(gm *secureboost.GuestModel, hms []*secureboost.HostModel, guest *dataset.Table, hosts []*dataset.Table, split dataset.Split, eps float64) (RoutingAUC, error) {
	gtest := split.Apply(guest).Test
	htest := make([]*dataset.Table, len(hosts))
	out := RoutingAUC{Epsilon: eps}
	for h, ht := range hosts {
		htest[h] = split.Apply(ht).Test
		out.Cost = max(out.Cost, hms[h].RouteCost(eps))
	}
	u := make([]float64, gtest.Len())
	routes := make([][]byte, len(hosts))
	for i := range u {
		for h := range hosts {
			r, err := hms[h].RouteRandomised(htest[h].X.Row(i), eps, rand.Reader)
			if err != nil {
				return out, err
			}
			routes[h] = r
		}
		v, err := gm.Logit(gtest.X.Row(i), routes)
		if err != nil {
			return out, err
		}
		u[i] = v
	}
	out.AUC = lr.Evaluate(u, gtest.Labels).AUC
	return out, nil
}

// links are the transports of a run.
type links struct {
	guest, host []secureboost.Transport
	closers     []io.Closer
	wire        atomic.Int64
}

func (l *links) close() {
	for _, c := range l.closers {
		_ = c.Close()
	}
}

// connect opens one link per host: a TLS 1.3 connection on 127.0.0.1 with
// client certificates required, or an in-memory pipe.
func connect(ctx context.Context, hosts int, plain bool) (*links, error) {
	l := &links{}
	if plain {
		for range hosts {
			a, b := secureboost.Pipe(64)
			l.guest, l.host = append(l.guest, a), append(l.host, b)
			l.closers = append(l.closers, closerFunc(func() error { a.Close(); return nil }))
		}
		return l, nil
	}
	ca, err := pki.NewCA("sbbench")
	if err != nil {
		return nil, err
	}
	srvCert, err := ca.IssueServer("127.0.0.1")
	if err != nil {
		return nil, err
	}
	cliCert, err := ca.IssueClient("bank")
	if err != nil {
		return nil, err
	}
	srvCfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	cliCfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cliCert}, RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	for range hosts {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
		if err != nil {
			l.close()
			return nil, err
		}
		type accepted struct {
			c   net.Conn
			err error
		}
		ch := make(chan accepted, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				err = c.(*tls.Conn).HandshakeContext(ctx)
			}
			ch <- accepted{c, err}
		}()
		var nd net.Dialer
		raw, err := nd.DialContext(ctx, "tcp", ln.Addr().String())
		var gc *tls.Conn
		if err == nil {
			gc = tls.Client(&countingConn{Conn: raw, n: &l.wire}, cliCfg)
			err = gc.HandshakeContext(ctx)
		}
		a := <-ch
		ln.Close()
		if err != nil || a.err != nil {
			if raw != nil {
				raw.Close()
			}
			if a.c != nil {
				a.c.Close()
			}
			l.close()
			return nil, errors.Join(err, a.err)
		}
		l.guest = append(l.guest, secureboost.NewStream(gc))
		l.host = append(l.host, secureboost.NewStream(a.c))
		l.closers = append(l.closers, gc, a.c)
	}
	return l, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// countingConn counts the bytes (TLS records, handshake included) the
// guest's TCP connection reads and writes.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// cpuSeconds returns the process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
