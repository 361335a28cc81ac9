package cachetest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// FaultProxy is a TCP proxy in front of a real server (Redis) that a test
// can cut off, to see what the code under test does when the server is
// partitioned away or stalled (SIGSTOP): while cut off, the proxy accepts
// connections and swallows every byte in both directions without answering
// (no reset, no close), as a dropped network path or a frozen server
// looks to a client. Heal closes the connections of the outage and
// forwards again.
type FaultProxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewFaultProxy listens on 127.0.0.1 and forwards to target (host:port);
// it stops at the test's end.
func NewFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &FaultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// Cut stops all traffic: connections stay open and silent.
func (p *FaultProxy) Cut() { p.cut.Store(true) }

// Heal drops the connections of the outage (their requests were lost) and
// forwards again.
func (p *FaultProxy) Heal() {
	p.cut.Store(false)
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *FaultProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *FaultProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(client, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(client, false)
			defer client.Close()
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			p.track(server, true)
			defer p.track(server, false)
			defer server.Close()
			done := make(chan struct{}, 2)
			go func() { p.pipe(server, client); done <- struct{}{} }()
			go func() { p.pipe(client, server); done <- struct{}{} }()
			<-done
		}()
	}
}

// pipe copies src to dst, swallowing what arrives while cut.
func (p *FaultProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *FaultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
