package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Sentinel errors.
var (
	// ErrNoClientCert: the peer presented no certificate that was verified.
	ErrNoClientCert = errors.New("pki: no verified peer certificate")
	// ErrNoPartyIdentity: the verified certificate names no valid party.
	ErrNoPartyIdentity = errors.New("pki: peer certificate carries no valid party identity")
	// ErrPeerNotAllowed: the peer's party is not on the allowlist.
	ErrPeerNotAllowed = errors.New("pki: peer party not allowed")
	// ErrInvalidPartyName: a party name breaks the rules of [CheckPartyName].
	ErrInvalidPartyName = errors.New("pki: invalid party name")
	// ErrUntrustedAnchor: a certificate names a listed party but does not
	// chain to that party's trust anchor, or carries a key not pinned for it.
	ErrUntrustedAnchor = errors.New("pki: certificate not bound to the party's trust anchor")
)

const partyURIPrefix = "fedrisk://party/"

func partyURI(party string) *url.URL {
	return &url.URL{Scheme: "fedrisk", Host: "party", Path: "/" + party}
}

// CheckPartyName reports whether name is a valid party name: 1 to 63
// lowercase letters, digits and '-', not starting or ending with '-' (a DNS
// label, since the name also appears in server certificates). The error wraps
// [ErrInvalidPartyName].
func CheckPartyName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("%w %.70q: must be 1 to 63 characters long", ErrInvalidPartyName, name)
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("%w %q: only lowercase letters, digits and '-' are allowed", ErrInvalidPartyName, name)
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("%w %q: must not start or end with '-'", ErrInvalidPartyName, name)
	}
	return nil
}

// PeerParty returns the party name of the authenticated peer from the leaf of
// its verified certificate chain: the fedrisk://party/<name> URI SAN if there
// is one, otherwise the CommonName. It returns [ErrNoClientCert] if no chain
// was verified (no certificate, or one the TLS config did not verify) and
// [ErrNoPartyIdentity] if the certificate names no valid party or several.
func PeerParty(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoClientCert
	}
	leaf := cs.VerifiedChains[0][0]
	party := ""
	for _, u := range leaf.URIs {
		name, ok := strings.CutPrefix(u.String(), partyURIPrefix)
		if !ok {
			continue
		}
		if CheckPartyName(name) != nil || (party != "" && party != name) {
			return "", ErrNoPartyIdentity
		}
		party = name
	}
	if party != "" {
		return party, nil
	}
	if CheckPartyName(leaf.Subject.CommonName) == nil {
		return leaf.Subject.CommonName, nil
	}
	return "", ErrNoPartyIdentity
}

// Allowlist admits only the listed parties, each only with a certificate
// bound to its own trust anchor: the one decision, for every peer API and
// for every call to a peer, of which party is on the other end. The zero
// value and a nil *Allowlist admit nobody.
type Allowlist struct {
	peers map[string]*peerTrust
	// defaults are the trust anchors of peers without their own (the
	// node's tls.ca_file); nil (NewAllowlist): whatever chain the TLS
	// configuration verified.
	defaults *anchors
}

// PeerTrust is what a party must present to be taken for itself.
type PeerTrust struct {
	Party string
	// Roots are the party's own trust anchors (its institution's CA): a
	// certificate naming the party is accepted only if it chains to one
	// of them. Nil: the allowlist's default roots.
	Roots []*x509.Certificate
	// SPKI pins the SHA-256 digests of the SubjectPublicKeyInfo of the
	// certificates the party may present (client and server); empty: any
	// key its roots certify.
	SPKI [][sha256.Size]byte
}

type peerTrust struct {
	roots *anchors // nil: the allowlist's defaults
	spki  [][sha256.Size]byte
}

// anchors are trust anchors as a list (to recognise the end of a verified
// chain) and as a pool (to verify against them alone).
type anchors struct {
	certs []*x509.Certificate
	pool  *x509.CertPool
}

func newAnchors(certs []*x509.Certificate) *anchors {
	a := &anchors{certs: certs, pool: x509.NewCertPool()}
	for _, c := range certs {
		a.pool.AddCert(c)
	}
	return a
}

func (a *anchors) has(c *x509.Certificate) bool {
	return slices.ContainsFunc(a.certs, func(r *x509.Certificate) bool { return r.Equal(c) })
}

// NewAllowlist returns an allowlist of parties, which must be valid names,
// that takes any chain the TLS configuration verified: for a federation
// with a single trust anchor. A node with several institutions' CAs uses
// [NewBoundAllowlist].
func NewAllowlist(parties ...string) (*Allowlist, error) {
	peers := make([]PeerTrust, len(parties))
	for i, p := range parties {
		peers[i] = PeerTrust{Party: p}
	}
	return newAllowlist(nil, peers)
}

// NewBoundAllowlist returns an allowlist of peers bound to their trust
// anchors: a certificate naming party P is accepted only if it chains to
// P's Roots (defaults when P has none) and, when P has SPKI pins, carries
// a pinned key. defaults are the node's shared CA certificates
// (tls.ca_file), possibly none.
func NewBoundAllowlist(defaults []*x509.Certificate, peers ...PeerTrust) (*Allowlist, error) {
	if defaults == nil {
		defaults = []*x509.Certificate{}
	}
	return newAllowlist(newAnchors(defaults), peers)
}

func newAllowlist(defaults *anchors, peers []PeerTrust) (*Allowlist, error) {
	a := &Allowlist{peers: make(map[string]*peerTrust, len(peers)), defaults: defaults}
	for _, p := range peers {
		if err := CheckPartyName(p.Party); err != nil {
			return nil, err
		}
		if _, dup := a.peers[p.Party]; dup {
			return nil, fmt.Errorf("pki: party %q listed twice", p.Party)
		}
		t := &peerTrust{spki: slices.Clone(p.SPKI)}
		if p.Roots != nil {
			if len(p.Roots) == 0 {
				return nil, fmt.Errorf("pki: party %q: an empty list of trust anchors", p.Party)
			}
			t.roots = newAnchors(p.Roots)
		}
		a.peers[p.Party] = t
	}
	return a, nil
}

// rootsOf returns the trust anchors of party t (nil: unbound).
func (a *Allowlist) rootsOf(t *peerTrust) *anchors {
	if t.roots != nil {
		return t.roots
	}
	return a.defaults
}

// Check returns the peer's party (see [PeerParty]) if it is allowed: listed,
// and its client certificate bound to the party's trust anchor and pins.
// The error is [ErrNoClientCert] without a verified certificate and
// otherwise wraps [ErrPeerNotAllowed] (and [ErrUntrustedAnchor] when the
// certificate names a listed party but is not bound to it); a party that
// was identified is still returned, for the audit log.
func (a *Allowlist) Check(cs *tls.ConnectionState) (string, error) {
	party, err := PeerParty(cs)
	switch {
	case errors.Is(err, ErrNoClientCert):
		return "", err
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrPeerNotAllowed, err)
	case a == nil || a.peers[party] == nil:
		return party, fmt.Errorf("%w: %q", ErrPeerNotAllowed, party)
	}
	if err := a.bound(party, cs); err != nil {
		return party, fmt.Errorf("%w: %w", ErrPeerNotAllowed, err)
	}
	return party, nil
}

// bound checks that the verified client certificate of cs, which names
// party, is bound to the party's trust anchor and pins.
func (a *Allowlist) bound(party string, cs *tls.ConnectionState) error {
	t := a.peers[party]
	leaf := cs.VerifiedChains[0][0]
	if len(t.spki) > 0 && !pinned(t.spki, leaf) {
		return fmt.Errorf("%w: the certificate naming %q has a key not pinned for it", ErrUntrustedAnchor, party)
	}
	roots := a.rootsOf(t)
	if roots == nil {
		return nil // NewAllowlist: the TLS configuration's verification stands
	}
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && chain[0].Equal(leaf) && roots.has(chain[len(chain)-1]) {
			return nil
		}
	}
	// The handshake may have found another chain first: verify against
	// the party's anchors alone.
	inter := x509.NewCertPool()
	if len(cs.PeerCertificates) > 1 {
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots.pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: the certificate naming %q is not issued by that party's trust anchor", ErrUntrustedAnchor, party)
	}
	return nil
}

func pinned(pins [][sha256.Size]byte, c *x509.Certificate) bool {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return slices.Contains(pins, sum)
}

// ClientConfig returns the TLS configuration for calls to party: its
// server certificate must chain to the party's trust anchors (the
// defaults when it has none of its own) and, when the party has SPKI
// pins, carry a pinned key. cert, if not nil, is presented as this node's
// client certificate.
func (a *Allowlist) ClientConfig(party string, cert *tls.Certificate) (*tls.Config, error) {
	if a == nil || a.peers[party] == nil {
		return nil, fmt.Errorf("%w: %q", ErrPeerNotAllowed, party)
	}
	t := a.peers[party]
	var pool *x509.CertPool
	if roots := a.rootsOf(t); roots != nil {
		pool = roots.pool
	}
	cfg := ClientConfig(cert, pool)
	if len(t.spki) > 0 {
		pins := t.spki
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !pinned(pins, cs.PeerCertificates[0]) {
				return fmt.Errorf("%w: the server certificate of %q has a key not pinned for it", ErrUntrustedAnchor, party)
			}
			return nil
		}
	}
	return cfg, nil
}

// HasOwnAnchor reports whether party has trust anchors or pins of its own
// (false: it is bound only to the default roots).
func (a *Allowlist) HasOwnAnchor(party string) bool {
	if a == nil || a.peers[party] == nil {
		return false
	}
	t := a.peers[party]
	return t.roots != nil || len(t.spki) > 0
}

// VerifyConnection has the signature of [tls.Config.VerifyConnection]: set it
// on a server configuration to refuse unlisted parties during the handshake.
func (a *Allowlist) VerifyConnection(cs tls.ConnectionState) error {
	_, err := a.Check(&cs)
	return err
}

// Has reports whether party is on the allowlist (false on a nil list).
func (a *Allowlist) Has(party string) bool { return a != nil && a.peers[party] != nil }

// Parties returns the listed parties.
func (a *Allowlist) Parties() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.peers))
	for p := range a.peers {
		out = append(out, p)
	}
	return out
}

// Authorities counts the independent trust anchors among certs: those not
// issued by another certificate of the list (a root and an intermediate
// it signed count once). A node whose tls.ca_file holds more than one
// trusts several institutions, and a peer without an anchor of its own
// could be impersonated by any of them.
func Authorities(certs []*x509.Certificate) int {
	n := 0
	for i, c := range certs {
		issued := false
		for j, p := range certs {
			if i != j && !p.Equal(c) && c.CheckSignatureFrom(p) == nil {
				issued = true
				break
			}
		}
		if !issued && !slices.ContainsFunc(certs[:i], c.Equal) {
			n++
		}
	}
	return n
}

// SPKIFingerprint returns the hex SHA-256 digest of c's SubjectPublicKeyInfo,
// the form peers[].spki_sha256 pins (openssl: x509 -pubkey | pkey -pubin
// -outform der | dgst -sha256).
func SPKIFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ParseSPKIPin reads a hex SHA-256 digest (64 digits, upper or lower case,
// optionally separated by colons).
func ParseSPKIPin(s string) ([sha256.Size]byte, error) {
	var pin [sha256.Size]byte
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return pin, fmt.Errorf("pki: SPKI pin %.80q: want the 64 hex digits of a SHA-256 digest", s)
	}
	copy(pin[:], b)
	return pin, nil
}
