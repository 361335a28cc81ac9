package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// KeyType selects the key algorithm of generated certificates.
type KeyType string

// Supported key types. The zero value means ECDSAP256.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA       KeyType = "rsa"
)

const (
	defaultValidity = 365 * 24 * time.Hour
	defaultRSABits  = 4096
	minRSABits      = 2048
	// clockSkew backdates NotBefore so that parties with slightly different
	// clocks accept a freshly issued certificate.
	clockSkew = 5 * time.Minute
)

// DevOptions tunes [GenerateDev]. The zero value is ready to use.
type DevOptions struct {
	// Validity of every certificate; 0 means 365 days.
	Validity time.Duration
	// Hosts are extra DNS names or IP addresses added to every server
	// certificate, besides localhost, 127.0.0.1, ::1 and the party name.
	Hosts []string
	// KeyType is ECDSAP256 (the default, fast) or RSA.
	KeyType KeyType
	// RSABits is the RSA key size when KeyType is RSA; 0 means 4096.
	// Sizes below 2048 are refused.
	RSABits int
	// Force overwrites existing files instead of refusing to.
	Force bool
}

func (o DevOptions) normalize() (DevOptions, error) {
	if o.Validity == 0 {
		o.Validity = defaultValidity
	}
	if o.Validity < 0 {
		return o, fmt.Errorf("pki: validity must be positive, got %v", o.Validity)
	}
	switch o.KeyType {
	case "", ECDSAP256:
		o.KeyType = ECDSAP256
	case RSA:
		if o.RSABits == 0 {
			o.RSABits = defaultRSABits
		}
		if o.RSABits < minRSABits {
			return o, fmt.Errorf("pki: RSA key size %d is below the minimum of %d bits", o.RSABits, minRSABits)
		}
	default:
		return o, fmt.Errorf("pki: unknown key type %q (want %q or %q)", o.KeyType, ECDSAP256, RSA)
	}
	for _, h := range o.Hosts {
		if err := checkHost(h); err != nil {
			return o, err
		}
	}
	return o, nil
}

// CA is a certificate authority held in memory. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	opts    DevOptions
}

// NewCA creates a self-signed CA named name with an ECDSA P-256 key, valid for
// 365 days.
func NewCA(name string) (*CA, error) {
	o, err := DevOptions{}.normalize()
	if err != nil {
		return nil, err
	}
	return newCA(name, o)
}

func newCA(name string, o DevOptions) (*CA, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("pki: CA name is empty")
	}
	key, err := newKey(o)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"fedrisk"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(o.Validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der), opts: o}, nil
}

// Pool returns a new pool holding only this CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// CertPEM returns the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// IssueServer issues a server certificate for hosts (DNS names or IP
// addresses). With no hosts it covers localhost, 127.0.0.1 and ::1.
func (ca *CA) IssueServer(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = loopbackHosts()
	}
	return ca.issueServer("", hosts)
}

// issueServer issues a server certificate for hosts; a non-empty party also
// gets the party URI SAN, so that clients can tell which party they reached.
func (ca *CA) issueServer(party string, hosts []string) (tls.Certificate, error) {
	tmpl := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if err := checkHost(h); err != nil {
			return tls.Certificate{}, err
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.Subject.CommonName = hosts[0]
	if party != "" {
		tmpl.Subject.CommonName = party
		tmpl.URIs = []*url.URL{partyURI(party)}
	}
	return ca.issue(tmpl)
}

// IssueClient issues a client certificate identifying party: CommonName party
// and URI SAN fedrisk://party/<party>.
func (ca *CA) IssueClient(party string) (tls.Certificate, error) {
	if err := CheckPartyName(party); err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: party},
		URIs:        []*url.URL{partyURI(party)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// issue fills in the common fields of a leaf template, makes a fresh key and
// signs the certificate.
func (ca *CA) issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := newKey(ca.opts)
	if err != nil {
		return tls.Certificate{}, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(ca.opts.Validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func newKey(o DevOptions) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	if o.KeyType == RSA {
		key, err = rsa.GenerateKey(rand.Reader, o.RSABits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: generate %s key: %w", o.KeyType, err)
	}
	return key, nil
}

// newSerial returns a random serial number in [1, 2^128).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit.Sub(limit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("pki: generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func checkHost(h string) error {
	if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t\r\n/") {
		return fmt.Errorf("pki: invalid host %q: want a DNS name or an IP address", h)
	}
	return nil
}

func loopbackHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// keyPEM encodes a private key as PKCS #8 ("PRIVATE KEY"), which openssl and
// crypto/tls both read.
func keyPEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}
