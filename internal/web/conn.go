package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// net/http answers a request it cannot parse (headers or URL over
// MaxHeaderBytes, a malformed request line or header, a missing Host, an
// unsupported transfer coding) itself, before any handler runs, with a
// text/plain body written straight to the connection in one Write. The
// listeners of this package wrap each HTTP/1 connection so that such an
// answer goes out in the JSON error shape instead. Over TLS the listener
// completes the handshake itself to see the plaintext of HTTP/1.1
// connections; HTTP/2 connections go to net/http as they are (its own
// refusals there, for header lists over the limit it advertises, keep
// net/http's body).

// cannedHeaders are the headers of every answer net/http writes itself.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// cannedError parses one of net/http's own error answers: "HTTP/1.1 431
// Request Header Fields Too Large" + cannedHeaders + body. A response of
// a handler never matches: net/http gives those a Date header.
func cannedError(b []byte) (status int, detail string, ok bool) {
	s, ok := bytes.CutPrefix(b, []byte("HTTP/1.1 "))
	if !ok {
		return 0, "", false
	}
	line, _, ok := bytes.Cut(s, []byte(cannedHeaders))
	if !ok || bytes.Contains(line, []byte("\r\n")) || len(line) < 3 {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	// "400 Bad Request: missing required Host header": net/http's
	// reason, a fixed text (never an echo of the request).
	_, detail, _ = strings.Cut(string(line[3:]), ": ")
	return status, detail, true
}

// jsonErrorAnswer is the answer that replaces one of net/http's own.
func jsonErrorAnswer(status int, detail string) []byte {
	msg := strings.ToLower(http.StatusText(status))
	if detail != "" {
		msg = detail
	}
	id := newRequestID()
	body, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: codeFor(status), Message: msg, RequestID: id}})
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n%s: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), RequestIDHeader, id, len(body), body)
}

// jsonErrorConn rewrites net/http's own error answers (see cannedError).
type jsonErrorConn struct {
	net.Conn
}

func (c *jsonErrorConn) Write(b []byte) (int, error) {
	if status, detail, ok := cannedError(b); ok {
		if _, err := c.Conn.Write(jsonErrorAnswer(status, detail)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// CloseWrite lets net/http half-close after an error answer, as it does
// on the connections it wraps itself.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsJSONErrorConn is an HTTP/1.1 connection over TLS whose handshake is
// done: ConnectionState gives net/http the verified peer (Request.TLS).
type tlsJSONErrorConn struct {
	jsonErrorConn
	tls *tls.Conn
}

func (c *tlsJSONErrorConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// plainListener wraps every connection in a jsonErrorConn.
type plainListener struct {
	net.Listener
}

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

// tlsListener accepts TCP connections, completes each TLS handshake in a
// goroutine of its own (as net/http does), and hands net/http the HTTP/2
// connections as *tls.Conn and the HTTP/1.1 ones wrapped.
type tlsListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration
	log     *log.Logger
	conns   chan net.Conn
	errs    chan error
	done    chan struct{}
	once    sync.Once
}

func newTLSListener(raw net.Listener, config *tls.Config, timeout time.Duration, errLog *log.Logger) *tlsListener {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	l := &tlsListener{Listener: raw, config: config, timeout: timeout, log: errLog,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // net/http backs off and accepts again
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(l.timeout))
			_, _ = re.Conn.Write(jsonErrorAnswer(http.StatusBadRequest, "the client sent an HTTP request to an HTTPS server"))
		} else if l.log != nil {
			l.log.Printf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err)
		}
		c.Close()
		return
	}
	var out net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		out = &tlsJSONErrorConn{jsonErrorConn: jsonErrorConn{Conn: tc}, tls: tc}
	}
	select {
	case l.conns <- out:
	case <-l.done:
		tc.Close()
	}
}

// looksLikeHTTP reports whether the first five bytes of a connection are
// the start of an HTTP request (net/http's test for the same answer).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
