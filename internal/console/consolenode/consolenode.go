// Package consolenode builds the web console of one node from the node's
// configuration.
//
// It takes the URLs of the services the console calls (console.*_url, or
// this node's own listen addresses), the TLS client it calls them with
// (tls.ca_file to verify them, the node's client certificate when they ask
// for mutual TLS), the optional Prometheus, and the certificate its own
// listener presents to browsers (console.tls_cert_file; the services'
// certificate is for peers).
package consolenode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/console/consoleapi"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// Deps is what the console needs from its node.
type Deps struct {
	Config config.Config
	Log    *slog.Logger
}

// Service is a running console.
type Service struct {
	api *consoleapi.API
	tls *tls.Config
	// URLs the console calls, by service name.
	URLs map[string]string
}

// New builds the console.
func New(_ context.Context, d Deps) (*Service, error) {
	cfg := d.Config
	urls, err := ServiceURLs(cfg)
	if err != nil {
		return nil, err
	}
	client, err := serviceClient(cfg.TLS)
	if err != nil {
		return nil, err
	}
	s := &Service{URLs: urls}
	if cfg.Console.TLSCertFile != "" {
		cert, err := pki.LoadKeyPair(cfg.Console.TLSCertFile, cfg.Console.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("console.tls_cert_file: %w", err)
		}
		// Browsers present no client certificate: never ask for one.
		s.tls = pki.ServerConfig(cert, nil, false)
		s.tls.ClientAuth = tls.NoClientCert
	}
	var prom *http.Client
	if cfg.Console.PrometheusURL != "" {
		prom = &http.Client{Timeout: 10 * time.Second}
	}
	s.api, err = consoleapi.New(consoleapi.Options{
		Party: cfg.Party, Role: cfg.Role,
		ConsentURL: urls[config.ServiceConsent], PSIURL: urls[config.ServicePSI], ServingURL: urls[config.ServiceServing],
		PrometheusURL: cfg.Console.PrometheusURL, HTTP: client, PrometheusHTTP: prom,
		AuthRequired: cfg.AuthRequired, DefaultModel: cfg.Scoring.Model, Log: d.Log,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Public tells the node the console's listener faces browsers: it shows
// /health only, not /ready or /metrics.
func (s *Service) Public() bool { return true }

// Mount adds the console's pages.
func (s *Service) Mount(mux *http.ServeMux) { s.api.Mount(mux) }

// Close ends the sessions.
func (s *Service) Close() error { return s.api.Close() }

// ListenerTLS is the TLS configuration of the console's own listener (nil:
// plain HTTP), which never asks browsers for a client certificate.
func (s *Service) ListenerTLS() *tls.Config { return s.tls }

// ServiceURLs returns the base URLs the console calls: console.*_url when
// set, else — when this node runs that service too — its own listen address
// of the service (https when the node serves TLS; an unspecified host
// becomes 127.0.0.1). A console on its own (a container, a pod) must be
// told where the services are.
func ServiceURLs(cfg config.Config) (map[string]string, error) {
	set := map[string]string{
		config.ServiceConsent: cfg.Console.ConsentURL,
		config.ServicePSI:     cfg.Console.PSIURL,
		config.ServiceServing: cfg.Console.ServingURL,
	}
	out := map[string]string{}
	for _, svc := range config.AllServices() {
		if u := set[svc]; u != "" {
			out[svc] = strings.TrimRight(u, "/")
			continue
		}
		if !slices.Contains(cfg.Services, svc) {
			return nil, fmt.Errorf("console: set console.%s_url (env FEDRISK_CONSOLE_%s_URL): this node runs no %s service for the console to call", svc, strings.ToUpper(svc), svc)
		}
		addr := cfg.Addrs[svc]
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" || port == "" {
			return nil, fmt.Errorf("console: set console.%s_url: the %s service's address %q cannot be called", svc, svc, addr)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		scheme := "http"
		if cfg.TLS.Enabled() {
			scheme = "https"
		}
		out[svc] = scheme + "://" + net.JoinHostPort(host, port)
	}
	return out, nil
}

// serviceClient calls the services: their certificates verified against
// tls.ca_file (the system roots when none is set), the node's client
// certificate presented when they ask for one.
func serviceClient(t config.TLS) (*http.Client, error) {
	var pool *x509.CertPool
	if t.CAFile != "" {
		p, err := pki.LoadCertPool(strings.Split(t.CAFile, ",")...)
		if err != nil {
			return nil, err
		}
		pool = p
	}
	var cert *tls.Certificate
	if t.ClientCertFile != "" {
		c, err := pki.LoadKeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	tr := &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 60 * time.Second}
	if pool != nil || cert != nil {
		cfg := pki.ClientConfig(cert, pool)
		if pool == nil {
			cfg.RootCAs = nil // system roots
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Timeout: 90 * time.Second, Transport: tr}, nil
}
