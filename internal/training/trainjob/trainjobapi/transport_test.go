package trainjobapi

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobtest"
)

func creditSubset(t *testing.T, n int) (*dataset.Table, *dataset.Table) {
	return trainjobtest.CreditSubset(t, n)
}

func trainConfig() lr.Config {
	cfg := lr.DefaultConfig()
	cfg.Epochs = 3
	return cfg
}

// train runs the guest over toHost (its host runs elsewhere).
func train(ctx context.Context, t *testing.T, g *dataset.Table, toHost hetero.Transport) *hetero.GuestModel {
	t.Helper()
	guest, err := hetero.NewGuest(hetero.GuestConfig{ModelID: "m", Version: "1", Train: trainConfig()}, g, []hetero.HostPeer{{Name: "telecom", Transport: toHost}})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := guest.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return gm
}

type mtls struct {
	server         *httptest.Server
	guestClient    *http.Client
	strangerClient *http.Client
	hostModel      chan *hetero.HostModel
	hostErr        chan error
	peer           *Peer
}

// startHost serves the peer API of host party "telecom" over mutual TLS on
// 127.0.0.1:0, admitting party "bank"; every session runs a host on h.
func startHost(t *testing.T, h *dataset.Table) *mtls {
	t.Helper()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.IssueServer("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	bank, err := ca.IssueClient("bank")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ca.IssueClient("stranger")
	if err != nil {
		t.Fatal(err)
	}
	m := &mtls{hostModel: make(chan *hetero.HostModel, 1), hostErr: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m.peer = NewPeer(PeerOptions{
		Peers: peersOf(t, false, "bank"),
		Accept: func(party, session string, _ trainjob.OpenRequest, tr hetero.Transport, done func()) (trainjob.OpenAnswer, error) {
			host, err := hetero.NewHost(hetero.HostConfig{Name: "telecom"}, h, tr)
			if err != nil {
				return trainjob.OpenAnswer{}, err
			}
			go func() {
				defer done()
				hm, err := host.Run(ctx)
				m.hostModel <- hm
				m.hostErr <- err
			}()
			return trainjob.OpenAnswer{}, nil
		},
	})
	t.Cleanup(func() { _ = m.peer.Close() })
	mux := http.NewServeMux()
	m.peer.Mount(mux)
	m.server = httptest.NewUnstartedServer(mux)
	m.server.TLS = pki.ServerConfig(srvCert, ca.Pool(), true)
	m.server.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	m.server.StartTLS()
	t.Cleanup(m.server.Close)
	client := func(c tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&c, ca.Pool())}}
	}
	m.guestClient, m.strangerClient = client(bank), client(stranger)
	return m
}

func TestTrainOverMutualTLSMatchesPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	g, h := creditSubset(t, 3000)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Reference: the in-memory pipe.
	toHost, toGuest := hetero.Pipe(16)
	host, err := hetero.NewHost(hetero.HostConfig{Name: "telecom"}, h, toGuest)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = host.Run(ctx) }()
	want := train(ctx, t, g, toHost)

	m := startHost(t, h)
	c, err := Open(ctx, m.guestClient, m.server.URL, ClientOptions{MessageTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := train(ctx, t, g, c)
	hm, herr := <-m.hostModel, <-m.hostErr
	if herr != nil {
		t.Fatalf("host: %v", herr)
	}
	if hm == nil || len(hm.Weights) != len(h.Features) || hm.ModelID != "m" {
		t.Fatalf("host model %+v", hm)
	}
	t.Logf("test AUC over mTLS %.5f, over the pipe %.5f", got.Metrics.Test.AUC, want.Metrics.Test.AUC)
	if d := math.Abs(got.Metrics.Test.AUC - want.Metrics.Test.AUC); d > 1e-3 {
		t.Errorf("test AUC over mTLS %.5f differs from the pipe's %.5f", got.Metrics.Test.AUC, want.Metrics.Test.AUC)
	}
	if got.Metrics.Test.AUC < 0.65 {
		t.Errorf("test AUC %.4f too low", got.Metrics.Test.AUC)
	}
	if err := c.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	if n := m.peer.Sessions(); n != 0 {
		t.Errorf("%d sessions left after close", n)
	}
}

func TestPeerRefusesUnregisteredParty(t *testing.T) {
	_, h := creditSubset(t, 200)
	m := startHost(t, h)
	ctx := context.Background()
	_, err := Open(ctx, m.strangerClient, m.server.URL, ClientOptions{})
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Status != http.StatusForbidden {
		t.Fatalf("stranger open: %v, want 403", err)
	}
	// Without a client certificate the handshake fails (RequireAndVerify).
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: m.server.Client().Transport.(*http.Transport).TLSClientConfig}}
	if _, err := Open(ctx, anon, m.server.URL, ClientOptions{}); err == nil {
		t.Fatal("anonymous open succeeded")
	}
	if n := m.peer.Sessions(); n != 0 {
		t.Errorf("%d sessions opened", n)
	}
}

func TestPlainLoopbackPeer(t *testing.T) {
	p := NewPeer(PeerOptions{
		Peers: peersOf(t, true, "bank"),
		Accept: func(party, session string, _ trainjob.OpenRequest, tr hetero.Transport, done func()) (trainjob.OpenAnswer, error) {
			go func() {
				defer done()
				ctx := context.Background()
				m, err := tr.Recv(ctx)
				if err != nil {
					return
				}
				_ = tr.Send(ctx, m) // echo
			}()
			return trainjob.OpenAnswer{}, nil
		},
	})
	defer p.Close()
	mux := http.NewServeMux()
	p.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	if _, err := Open(ctx, srv.Client(), srv.URL, ClientOptions{Party: "other"}); err == nil {
		t.Fatal("unregistered party admitted")
	}
	c, err := Open(ctx, srv.Client(), srv.URL, ClientOptions{Party: "bank", MessageTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := hetero.Message{Type: hetero.MsgAbort, Payload: []byte("bye")}
	if err := c.Send(ctx, in); err != nil {
		t.Fatal(err)
	}
	out, err := c.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Type != in.Type || string(out.Payload) != "bye" {
		t.Fatalf("echo %v", out)
	}
	// The host finished: the next fetch says the session is closed.
	if _, err := c.Recv(ctx); !errors.Is(err, hetero.ErrClosed) {
		t.Fatalf("after the end: %v", err)
	}
}
