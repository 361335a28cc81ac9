package trainjobapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

func rawPost(t *testing.T, url, party string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set(authhttp.PartyHeader, party)
	req.Header.Set("Content-Type", ContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPeerChecksMessages(t *testing.T) {
	got := make(chan hetero.Message, 4)
	p := NewPeer(PeerOptions{
		Peers: peersOf(t, true, "bank", "other"),
		Poll:  50 * time.Millisecond,
		Accept: func(party, session string, _ trainjob.OpenRequest, tr hetero.Transport, done func()) (trainjob.OpenAnswer, error) {
			go func() {
				defer done()
				for {
					m, err := tr.Recv(context.Background())
					if err != nil {
						return
					}
					got <- m
				}
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
	c, err := Open(ctx, srv.Client(), srv.URL, ClientOptions{Party: "bank", MessageTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.URL + "/train/v1/peer/sessions/" + c.ID() + "/messages/"
	good, err := hetero.Encode(hetero.Message{Type: hetero.MsgAbort, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if s := rawPost(t, base+"0", "other", good); s != http.StatusNotFound {
		t.Errorf("another party's session: HTTP %d", s)
	}
	if s := rawPost(t, base+"0", "bank", []byte("garbage")); s != http.StatusBadRequest {
		t.Errorf("malformed: HTTP %d", s)
	}
	if s := rawPost(t, base+"1", "bank", good); s != http.StatusConflict {
		t.Errorf("out of order: HTTP %d", s)
	}
	if s := rawPost(t, base+"0", "bank", good); s != http.StatusNoContent {
		t.Errorf("first: HTTP %d", s)
	}
	if s := rawPost(t, base+"0", "bank", good); s != http.StatusNoContent {
		t.Errorf("retry: HTTP %d", s)
	}
	big := make([]byte, hetero.MaxMessageBytes+1)
	if s := rawPost(t, base+"1", "bank", big); s != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: HTTP %d", s)
	}
	if m := <-got; string(m.Payload) != "x" {
		t.Errorf("delivered %v", m)
	}
	select {
	case m := <-got:
		t.Errorf("the retry was delivered again: %v", m)
	default:
	}
	// Nothing to fetch: the long poll answers 204 and Recv times out.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Recv(short); err == nil {
		t.Error("Recv returned a message that was never sent")
	}
}

// peersOf registers names as peers; plain admits them over loopback HTTP.
func peersOf(t *testing.T, plain bool, names ...string) authhttp.Peers {
	t.Helper()
	allow, err := pki.NewAllowlist(names...)
	if err != nil {
		t.Fatal(err)
	}
	return authhttp.Peers{Allowlist: allow, PlainLoopback: plain}
}
