package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts bound every phase of a connection.
type Timeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
}

// Server is one listener of one service.
type Server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// Listen binds addr now (so ":0" resolves before Serve) and returns a server
// for h. With tlsConfig non-nil the listener speaks TLS.
func Listen(name, addr string, h http.Handler, t Timeouts, tlsConfig *tls.Config, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if tlsConfig != nil {
		// HTTP/2 over TLS: a peer multiplexes its calls on one connection,
		// and a call abandoned at its deadline resets one stream instead of
		// closing the connection (and costing a new handshake).
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"h2", "http/1.1"}
		ln = newTLSListener(ln, tlsConfig, handshakeTimeout(t), errLog)
	} else {
		ln = plainListener{ln}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tlsConfig,
		ErrorLog:          errLog,
	}
	return &Server{name: name, srv: srv, ln: ln}, nil
}

// handshakeTimeout bounds a TLS handshake as net/http would: the shortest
// of the read-header, read and write timeouts.
func handshakeTimeout(t Timeouts) time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{t.ReadHeader, t.Read, t.Write} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	return d
}

// Addr is the bound address, e.g. 127.0.0.1:7002.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Name is the service this server runs.
func (s *Server) Name() string { return s.name }

// Serve answers until Shutdown; it returns nil after a graceful shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.srv.Close() }
