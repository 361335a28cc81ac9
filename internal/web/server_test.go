package web

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/pki"
)

// serveOn starts a Server for h on 127.0.0.1:0 (TLS when cfg is set) and
// stops it at the test's end.
func serveOn(t *testing.T, h http.Handler, cfg *tls.Config) *Server {
	t.Helper()
	s, err := Listen("test", "127.0.0.1:0", h, Timeouts{ReadHeader: 5 * time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: 5 * time.Second}, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s
}

// rawRequest writes req on a new connection and reads the answer.
func rawRequest(t *testing.T, dial func() (net.Conn, error), req string) *http.Response {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, req) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestServerErrorsAreJSON: the errors net/http writes itself, before any
// handler runs (URL or headers over the limit, malformed requests), use
// the JSON error shape too, over plain HTTP and TLS (issue 12, finding 10).
func TestServerErrorsAreJSON(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := ca.IssueClient("partner")
	if err != nil {
		t.Fatal(err)
	}
	// The handler reports the verified peer, as the peer APIs read it.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		party, _ := pki.PeerParty(r.TLS)
		io.WriteString(w, r.Proto+" "+party)
	})
	plain := serveOn(t, h, nil)
	secure := serveOn(t, h, pki.ServerConfig(srvCert, ca.Pool(), false))
	clientTLS := pki.ClientConfig(&cliCert, ca.Pool())
	clientTLS.NextProtos = []string{"http/1.1"}
	dialers := map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", plain.Addr()) },
		"tls":   func() (net.Conn, error) { return tls.Dial("tcp", secure.Addr(), clientTLS) },
	}
	big := strings.Repeat("a", 70<<10)
	tests := []struct {
		name, req string
		status    int
		code      string
	}{
		{"headers over the limit", "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\n\r\n", 431, "request_header_fields_too_large"},
		{"URL over the limit", "GET /" + big + " HTTP/1.1\r\nHost: a\r\n\r\n", 431, "request_header_fields_too_large"},
		{"malformed header", "GET /x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400, "bad_request"},
		{"missing host", "GET /x HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"unsupported transfer encoding", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not_implemented"},
	}
	for name, dial := range dialers {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				resp := rawRequest(t, dial, tt.req)
				b, _ := io.ReadAll(resp.Body)
				var e ErrorBody
				if resp.StatusCode != tt.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
					json.Unmarshal(b, &e) != nil || e.Error.Code != tt.code || e.Error.Message == "" {
					t.Errorf("%d %q %s, want %d and a JSON error %s", resp.StatusCode, resp.Header.Get("Content-Type"), b, tt.status, tt.code)
				}
				if resp.Header.Get(RequestIDHeader) == "" || e.Error.RequestID != resp.Header.Get(RequestIDHeader) {
					t.Errorf("request id %q, body %q", resp.Header.Get(RequestIDHeader), e.Error.RequestID)
				}
			})
		}
	}
	t.Run("plain HTTP to the TLS listener", func(t *testing.T) {
		resp := rawRequest(t, func() (net.Conn, error) { return net.Dial("tcp", secure.Addr()) }, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
		b, _ := io.ReadAll(resp.Body)
		var e ErrorBody
		if resp.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Error.Code != "bad_request" || !strings.Contains(e.Error.Message, "HTTPS") {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
	// Good requests still reach the handler with the verified client
	// certificate, over HTTP/1.1 and HTTP/2.
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run("good request "+proto, func(t *testing.T) {
			cfg := pki.ClientConfig(&cliCert, ca.Pool())
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: proto == "h2"}
			if proto == "http/1.1" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + secure.Addr() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			want := map[string]string{"http/1.1": "HTTP/1.1 partner", "h2": "HTTP/2.0 partner"}[proto]
			if resp.StatusCode != 200 || string(b) != want {
				t.Errorf("%d %q, want %q", resp.StatusCode, b, want)
			}
		})
	}
}
