// Package auth decides who is calling a client API and what they may do.
//
// Callers are principals: a bearer-token holder with a role (admin,
// operator, analyst, partner), a peer party authenticated by its mutual-TLS
// client certificate, or — only while AUTH_REQUIRED is false — a local
// caller on the loopback interface. Bearer tokens are random 256-bit
// values; only their SHA-256 is stored, and a token is shown once, when it
// is created.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is what a principal may do.
type Role string

// Roles, from most to least powerful for the consent APIs. Partner is apart:
// it may only introspect tokens and stream revocations.
const (
	RoleAdmin    Role = "admin"    // everything, including purposes, deletion and audit
	RoleOperator Role = "operator" // grant, withdraw, issue tokens, export
	RoleAnalyst  Role = "analyst"  // read consents and purposes
	RolePartner  Role = "partner"  // peer APIs: token introspection, revocation stream
)

// Roles lists every role.
func Roles() []Role { return []Role{RoleAdmin, RoleOperator, RoleAnalyst, RolePartner} }

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(Roles(), r) {
		return "", fmt.Errorf("unknown role %q (accepted: admin, operator, analyst, partner)", s)
	}
	return r, nil
}

// Principal is an authenticated caller.
type Principal struct {
	Kind  string // "token", "peer" or "local"
	Name  string // token name, peer party, or "loopback"
	Roles []Role
}

// Actor is how the audit log names the principal.
func (p Principal) Actor() string { return p.Kind + ":" + p.Name }

// Has reports whether the principal holds one of roles.
func (p Principal) Has(roles ...Role) bool {
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// Local is the principal of a loopback caller while authentication is off.
func Local() Principal {
	return Principal{Kind: "local", Name: "loopback", Roles: []Role{RoleAdmin, RoleOperator, RoleAnalyst, RolePartner}}
}

// Peer is the principal of a party authenticated by its certificate.
func Peer(party string) Principal {
	return Principal{Kind: "peer", Name: party, Roles: []Role{RolePartner}}
}

// StoredToken is a bearer token as stored.
type StoredToken struct {
	ID        string
	Name      string
	Role      Role
	Hash      []byte
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Store persists bearer tokens (auth/sqlauth).
type Store interface {
	CreateToken(ctx context.Context, t StoredToken) error
	FindToken(ctx context.Context, hash []byte) (StoredToken, error) // ErrUnknownToken
	ListTokens(ctx context.Context) ([]StoredToken, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error // ErrUnknownToken
}

// Errors.
var (
	ErrUnknownToken = errors.New("unknown or revoked token")
	ErrNoToken      = errors.New("no bearer token")
)

// Tokens issues and checks bearer tokens.
type Tokens struct{ store Store }

// NewTokens returns Tokens over store.
func NewTokens(store Store) *Tokens { return &Tokens{store: store} }

// Create makes a token for name with role and returns the secret, which is
// not stored and cannot be shown again.
func (t *Tokens) Create(ctx context.Context, name string, role Role) (secret string, tok StoredToken, err error) {
	if name == "" || len(name) > 64 {
		return "", tok, errors.New("token name must be 1..64 characters")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", tok, err
	}
	secret = "frk_" + base64.RawURLEncoding.EncodeToString(raw[:])
	var id [9]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", tok, err
	}
	tok = StoredToken{ID: "tok_" + base64.RawURLEncoding.EncodeToString(id[:]), Name: name, Role: role, Hash: hash(secret), CreatedAt: time.Now().UTC()}
	if err := t.store.CreateToken(ctx, tok); err != nil {
		return "", tok, fmt.Errorf("create token: %w", err)
	}
	return secret, tok, nil
}

// Authenticate resolves a bearer token. The lookup is by SHA-256 of the
// secret, so timing reveals nothing about stored tokens.
func (t *Tokens) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, ErrNoToken
	}
	if len(secret) > 256 {
		return Principal{}, ErrUnknownToken
	}
	st, err := t.store.FindToken(ctx, hash(secret))
	if err != nil {
		return Principal{}, err
	}
	if st.RevokedAt != nil {
		return Principal{}, ErrUnknownToken
	}
	roles := []Role{st.Role}
	switch st.Role { // higher roles include the lower ones
	case RoleAdmin:
		roles = []Role{RoleAdmin, RoleOperator, RoleAnalyst}
	case RoleOperator:
		roles = []Role{RoleOperator, RoleAnalyst}
	}
	return Principal{Kind: "token", Name: st.Name, Roles: roles}, nil
}

// List returns every token (without secrets).
func (t *Tokens) List(ctx context.Context) ([]StoredToken, error) { return t.store.ListTokens(ctx) }

// Revoke revokes a token by id.
func (t *Tokens) Revoke(ctx context.Context, id string) error {
	return t.store.RevokeToken(ctx, id, time.Now().UTC())
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
