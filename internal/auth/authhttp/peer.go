package authhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"

	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/web"
)

// PartyHeader names the calling party on plain-HTTP loopback peer calls
// (a node without TLS, as in the demo); under mutual TLS the client
// certificate names the caller and the header is ignored.
const PartyHeader = "X-Fedrisk-Party"

// Peers identifies the other parties calling a peer API: the one place
// that decides, for every service, which party a request comes from.
type Peers struct {
	// Allowlist holds the registered peers (the configuration's peers);
	// nil admits none.
	Allowlist *pki.Allowlist
	// PlainLoopback admits peers over plain HTTP from the loopback
	// interface, naming themselves in PartyHeader: only for a node without
	// TLS and without AUTH_REQUIRED (the demo).
	PlainLoopback bool
	// API names the API in refusals ("the PSI peer API").
	API string
	// Code is the error code of a refusal (default "forbidden").
	Code string
}

// Party returns the registered party calling r, or a 403 *web.Error.
func (p Peers) Party(r *http.Request) (string, error) {
	code := p.Code
	if code == "" {
		code = "forbidden"
	}
	api := p.API
	if api == "" {
		api = "this peer API"
	}
	if r.TLS != nil {
		party, err := p.Allowlist.Check(r.TLS)
		switch {
		case errors.Is(err, pki.ErrUntrustedAnchor):
			return "", web.Errorf(http.StatusForbidden, code, "the certificate naming party %q is not bound to that party's trust anchor", party)
		case party != "" && err != nil:
			return "", web.Errorf(http.StatusForbidden, code, "party %q is not a registered peer", party)
		case err != nil:
			return "", web.Errorf(http.StatusForbidden, code, "%s needs a registered peer's mutual-TLS client certificate", api)
		}
		return party, nil
	}
	if !p.PlainLoopback || !IsLoopback(r.RemoteAddr) {
		return "", web.Errorf(http.StatusForbidden, code, "%s needs a registered peer's mutual-TLS client certificate", api)
	}
	party := r.Header.Get(PartyHeader)
	if pki.CheckPartyName(party) != nil || !p.Allowlist.Has(party) {
		return "", web.Errorf(http.StatusForbidden, code, "party %.70q is not a registered peer", party)
	}
	return party, nil
}

// Allowed reports whether party is a registered peer.
func (p Peers) Allowed(party string) bool { return p.Allowlist.Has(party) }

// CertParty returns the registered party a verified client certificate
// names, or "" (the Guard's PeerParty).
func (p Peers) CertParty(cs *tls.ConnectionState) string {
	party, err := p.Allowlist.Check(cs)
	if err != nil {
		return ""
	}
	return party
}

type partyKey struct{}

// WithParty stores the calling peer's party in ctx.
func WithParty(ctx context.Context, party string) context.Context {
	return context.WithValue(ctx, partyKey{}, party)
}

// PartyOf returns the party WithParty stored ("" for none).
func PartyOf(ctx context.Context) string {
	s, _ := ctx.Value(partyKey{}).(string)
	return s
}
