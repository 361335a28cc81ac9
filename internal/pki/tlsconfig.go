package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ServerConfig returns a TLS server configuration presenting cert. Client
// certificates are verified against clientCAs; when requireClientCert is set a
// client without a valid certificate is refused, otherwise a certificate is
// optional but verified when given. A nil clientCAs trusts no client (never
// the system roots).
//
// TLS 1.3 is negotiated whenever the peer supports it; TLS 1.2 is the minimum
// and is limited to forward-secret AEAD cipher suites.
func ServerConfig(cert tls.Certificate, clientCAs *x509.CertPool, requireClientCert bool) *tls.Config {
	cfg := baseConfig()
	cfg.Certificates = []tls.Certificate{cert}
	cfg.ClientCAs = orEmpty(clientCAs)
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// ClientConfig returns a TLS client configuration that verifies servers
// against rootCAs and, if cert is not nil, presents it as client certificate.
// A nil rootCAs trusts no server (never the system roots).
func ClientConfig(cert *tls.Certificate, rootCAs *x509.CertPool) *tls.Config {
	cfg := baseConfig()
	cfg.RootCAs = orEmpty(rootCAs)
	// TLS 1.3 resumption: a new connection to a server seen before skips
	// the certificate exchange and signatures.
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 only; TLS 1.3 suites are not configurable and all fine.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

func orEmpty(p *x509.CertPool) *x509.CertPool {
	if p == nil {
		return x509.NewCertPool()
	}
	return p
}

// LoadKeyPair reads a PEM certificate (chain) and its PEM private key. Errors
// name the file at fault.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: read certificate: %w", err)
	}
	if _, err := parseCertificatesPEM(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: certificate file %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: read private key: %w", err)
	}
	if b, _ := pem.Decode(keyPEM); b == nil {
		return tls.Certificate{}, fmt.Errorf("pki: key file %s: no PEM-encoded private key found", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: key pair %s, %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// LoadCertPool returns a pool of the CA certificates in files, for example
// the CA certificates of every institution in the federation. Each file holds
// one or more PEM CERTIFICATE blocks and nothing else.
func LoadCertPool(files ...string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(files...)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// LoadCertificates reads the PEM certificates in files (see [LoadCertPool]).
func LoadCertificates(files ...string) ([]*x509.Certificate, error) {
	if len(files) == 0 {
		return nil, errors.New("pki: no CA certificate files given")
	}
	var all []*x509.Certificate
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki: read CA certificates: %w", err)
		}
		certs, err := parseCertificatesPEM(data)
		if err != nil {
			return nil, fmt.Errorf("pki: CA file %s: %w", f, err)
		}
		all = append(all, certs...)
	}
	return all, nil
}

// parseCertificatesPEM parses data holding one or more PEM CERTIFICATE blocks.
// Text around the blocks is ignored, any other block type is an error (a
// private key in a certificate file is a mistake worth reporting).
func parseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %.40q, want CERTIFICATE", len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM-encoded certificate found")
	}
	return certs, nil
}
