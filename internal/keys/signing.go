package keys

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// JWKS is a JSON Web Key Set (RFC 7517), served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWK is one RSA signing key. Status is "next", "current" or "retired".
type JWK struct {
	Kty    string `json:"kty"`
	Use    string `json:"use"`
	Alg    string `json:"alg"`
	Kid    string `json:"kid"`
	N      string `json:"n"`
	E      string `json:"e"`
	Status string `json:"status,omitempty"`
}

func rsaJWK(kid string, pub *rsa.PublicKey, state SigningState) JWK {
	n, e := jwkParams(pub)
	return JWK{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: kid, N: n, E: e, Status: string(state)}
}

// jwkParams returns the base64url, unpadded, big-endian modulus and exponent.
func jwkParams(pub *rsa.PublicKey) (n, e string) {
	return base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub: the base64url
// SHA-256 of {"e":…,"kty":"RSA","n":…}, members in that order, no spaces.
// It is the kid of every signing key.
func Thumbprint(pub *rsa.PublicKey) string {
	n, e := jwkParams(pub)
	// n and e are base64url: nothing in them needs JSON escaping.
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ensureSigningKeys creates the first current and next keys in an empty
// database and loads the current one.
func (m *Manager) ensureSigningKeys(ctx context.Context) error {
	recs, err := m.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: load signing keys: %w", err)
	}
	if len(recs) == 0 {
		cur, err := m.newSigningKey(SigningCurrent)
		if err != nil {
			return err
		}
		next, err := m.newSigningKey(SigningNext)
		if err != nil {
			return err
		}
		switch err := m.store.InitSigningKeys(ctx, cur, next); {
		case err == nil:
			// A kid is public (it is in the JWKS), so it may be logged.
			m.log.Info("created signing keys", "current", cur.Kid, "next", next.Kid)
		case errors.Is(err, ErrConflict): // another node created them first
		default:
			return fmt.Errorf("keys: create signing keys: %w", err)
		}
	}
	m.sigMu.Lock()
	defer m.sigMu.Unlock()
	return m.refreshSigner(ctx)
}

func (m *Manager) newSigningKey(state SigningState) (SigningKeyRecord, error) {
	priv, err := rsa.GenerateKey(rand.Reader, m.rsaBits)
	if err != nil {
		return SigningKeyRecord{}, fmt.Errorf("keys: generate RSA key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return SigningKeyRecord{}, fmt.Errorf("keys: encode public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return SigningKeyRecord{}, fmt.Errorf("keys: encode private key: %w", err)
	}
	defer clear(der)
	kid := Thumbprint(&priv.PublicKey)
	return SigningKeyRecord{Kid: kid, State: state, Public: pub, Private: seal(m.wrap, der, signingAAD(kid)), CreatedAt: m.now()}, nil
}

func signingAAD(kid string) []byte { return []byte("fedrisk/keys/signing/" + kid) }

// refreshSigner loads the current key if it is not the cached one. The
// caller holds sigMu.
func (m *Manager) refreshSigner(ctx context.Context) error {
	recs, err := m.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: load signing keys: %w", err)
	}
	i := slices.IndexFunc(recs, func(r SigningKeyRecord) bool { return r.State == SigningCurrent })
	if i < 0 {
		return errors.New("keys: the database has no current signing key")
	}
	cur := recs[i]
	if m.signer == nil || cur.Kid != m.signKid {
		der, err := open(m.wrap, cur.Private, signingAAD(cur.Kid))
		if err != nil {
			return fmt.Errorf("%w (the current signing key does not unwrap)", ErrRootKeyMismatch)
		}
		defer clear(der)
		k, err := x509.ParsePKCS8PrivateKey(der)
		priv, ok := k.(*rsa.PrivateKey)
		if err != nil || !ok || Thumbprint(&priv.PublicKey) != cur.Kid {
			return errors.New("keys: the current signing key is malformed or does not match its kid")
		}
		m.signer, m.signKid = priv, cur.Kid
	}
	m.checked = m.now()
	return nil
}

// Signer returns the current signing key and its kid. The result is cached
// and checked against the database every few seconds, so a rotation by
// another node is picked up quickly; the key must not be modified.
func (m *Manager) Signer(ctx context.Context) (kid string, key *rsa.PrivateKey, err error) {
	m.sigMu.Lock()
	defer m.sigMu.Unlock()
	if age := m.now().Sub(m.checked); m.signer == nil || age < 0 || age >= signerRefresh {
		if err := m.refreshSigner(ctx); err != nil {
			return "", nil, fmt.Errorf("signer: %w", err)
		}
	}
	return m.signKid, m.signer, nil
}

// PublicKey returns the public key named kid, whether next, current or
// retired (receipts signed long ago still verify); ErrUnknownKey otherwise.
func (m *Manager) PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	m.pubMu.RLock()
	pub := m.pubs[kid]
	m.pubMu.RUnlock()
	if pub != nil {
		return pub, nil
	}
	rec, err := m.store.SigningKey(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return m.parsePublic(rec)
}

// parsePublic decodes a stored public key, checks it against its kid and
// caches it (a kid names one key for ever).
func (m *Manager) parsePublic(rec SigningKeyRecord) (*rsa.PublicKey, error) {
	m.pubMu.RLock()
	pub := m.pubs[rec.Kid]
	m.pubMu.RUnlock()
	if pub != nil {
		return pub, nil
	}
	k, err := x509.ParsePKIXPublicKey(rec.Public)
	pub, ok := k.(*rsa.PublicKey)
	if err != nil || !ok || Thumbprint(pub) != rec.Kid {
		return nil, errors.New("keys: a stored public key is malformed or does not match its kid")
	}
	m.pubMu.Lock()
	m.pubs[rec.Kid] = pub
	m.pubMu.Unlock()
	return pub, nil
}

// JWKS returns every signing key: current first, then next, then retired
// ones, newest first.
func (m *Manager) JWKS(ctx context.Context) (JWKS, error) {
	recs, err := m.store.SigningKeys(ctx)
	if err != nil {
		return JWKS{}, fmt.Errorf("JWKS: %w", err)
	}
	rank := map[SigningState]int{SigningCurrent: 0, SigningNext: 1, SigningRetired: 2}
	slices.SortStableFunc(recs, func(a, b SigningKeyRecord) int {
		if d := rank[a.State] - rank[b.State]; d != 0 {
			return d
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	set := JWKS{Keys: make([]JWK, 0, len(recs))}
	for _, r := range recs {
		pub, err := m.parsePublic(r)
		if err != nil {
			return JWKS{}, fmt.Errorf("JWKS: %w", err)
		}
		set.Keys = append(set.Keys, rsaJWK(r.Kid, pub, r.State))
	}
	return set, nil
}

// RotateSigning promotes the next key to current, retires the current one
// (its private half is erased; it still verifies) and creates a new next key.
// It returns the new current kid. If another node rotated at the same time,
// it fails with ErrConflict and changes nothing.
func (m *Manager) RotateSigning(ctx context.Context) (string, error) {
	recs, err := m.store.SigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("rotate signing keys: %w", err)
	}
	var cur, next string
	for _, r := range recs {
		switch r.State {
		case SigningCurrent:
			cur = r.Kid
		case SigningNext:
			next = r.Kid
		}
	}
	if cur == "" || next == "" {
		return "", errors.New("rotate signing keys: the database lacks a current or next key")
	}
	newNext, err := m.newSigningKey(SigningNext)
	if err != nil {
		return "", fmt.Errorf("rotate signing keys: %w", err)
	}
	if err := m.store.RotateSigningKeys(ctx, cur, next, newNext, m.now()); err != nil {
		return "", fmt.Errorf("rotate signing keys: %w", err)
	}
	m.log.Info("signing keys rotated", "retired", cur, "current", next, "next", newNext.Kid)
	m.sigMu.Lock()
	defer m.sigMu.Unlock()
	if err := m.refreshSigner(ctx); err != nil {
		return "", fmt.Errorf("rotate signing keys: %w", err)
	}
	return next, nil
}
