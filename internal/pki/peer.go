package pki

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
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

// Allowlist admits only the listed parties. The zero value and a nil
// *Allowlist admit nobody.
type Allowlist struct {
	parties map[string]bool
}

// NewAllowlist returns an allowlist of parties, which must be valid names.
func NewAllowlist(parties ...string) (*Allowlist, error) {
	a := &Allowlist{parties: make(map[string]bool, len(parties))}
	for _, p := range parties {
		if err := CheckPartyName(p); err != nil {
			return nil, err
		}
		a.parties[p] = true
	}
	return a, nil
}

// Check returns the peer's party (see [PeerParty]) if it is allowed. The error
// is [ErrNoClientCert] without a verified certificate and otherwise wraps
// [ErrPeerNotAllowed]; a party that was identified but is not listed is still
// returned, for the audit log.
func (a *Allowlist) Check(cs *tls.ConnectionState) (string, error) {
	party, err := PeerParty(cs)
	switch {
	case errors.Is(err, ErrNoClientCert):
		return "", err
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrPeerNotAllowed, err)
	case a == nil || !a.parties[party]:
		return party, fmt.Errorf("%w: %q", ErrPeerNotAllowed, party)
	}
	return party, nil
}

// VerifyConnection has the signature of [tls.Config.VerifyConnection]: set it
// on a server configuration to refuse unlisted parties during the handshake.
func (a *Allowlist) VerifyConnection(cs tls.ConnectionState) error {
	_, err := a.Check(&cs)
	return err
}

// Has reports whether party is on the allowlist (false on a nil list).
func (a *Allowlist) Has(party string) bool { return a != nil && a.parties[party] }

// Parties returns the listed parties.
func (a *Allowlist) Parties() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.parties))
	for p := range a.parties {
		out = append(out, p)
	}
	return out
}
