package consent_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fedrisk/fedrisk/internal/consent"
)

func TestNormalizeIdentifier(t *testing.T) {
	tests := []struct{ in, want string }{
		{" ID123 ", "id123"},
		{"13800138000", "13800138000"},
	}
	for _, tt := range tests {
		if got, err := consent.NormalizeIdentifier(tt.in); err != nil || got != tt.want {
			t.Errorf("%q: %q %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 257), "a\x00b", "a\nb"} {
		if _, err := consent.NormalizeIdentifier(bad); !errors.Is(err, consent.ErrInvalid) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEffectiveStatus(t *testing.T) {
	now := time.Now()
	c := consent.Consent{Status: consent.StatusActive, ExpiresAt: now.Add(time.Hour)}
	if c.EffectiveStatus(now) != consent.StatusActive || !c.Usable(now) {
		t.Error("active consent")
	}
	if c.EffectiveStatus(now.Add(2*time.Hour)) != consent.StatusExpired || c.Usable(now.Add(2*time.Hour)) {
		t.Error("a consent past its expiry must be expired")
	}
	c.NeedsRenewal = true
	if c.Usable(now) {
		t.Error("a consent needing renewal must not be usable")
	}
}

var fuzzKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func signed(t testing.TB) string {
	now := time.Now()
	c := consent.Claims{Purpose: "p", ConsentID: "cns_1", PolicyVersion: 1, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "fedrisk:bank", Subject: "s", Audience: jwt.ClaimStrings{"partner"}, ID: "j",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	tk := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tk.Header["kid"], tk.Header["typ"] = "k1", consent.TokenType
	s, err := tk.SignedString(fuzzKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzParseToken: no input other than the untouched signed token verifies,
// and nothing panics.
func FuzzParseToken(f *testing.F) {
	good := signed(f)
	f.Add(good)
	f.Add("e30.e30.")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Replace(good, ".", "..", 1))
	key := func(kid string) (*rsa.PublicKey, error) {
		if kid != "k1" {
			return nil, errors.New("unknown")
		}
		return &fuzzKey.PublicKey, nil
	}
	f.Fuzz(func(t *testing.T, token string) {
		_, err := consent.ParseToken(token, "fedrisk:bank", time.Second, time.Now(), key)
		if err == nil && token != good {
			t.Fatalf("forged token accepted: %q", token)
		}
		if err != nil && !errors.Is(err, consent.ErrTokenRejected) {
			t.Fatalf("rejection is not a TokenError: %v", err)
		}
	})
}

// TestTokenCache: a token presented again skips the key lookup and the
// signature check; a tampered token never hits; nothing outlives MaxAge.
func TestTokenCache(t *testing.T) {
	tok := signed(t)
	lookups := 0
	key := func(kid string) (*rsa.PublicKey, error) { lookups++; return &fuzzKey.PublicKey, nil }
	c := consent.NewTokenCache(2)
	now := time.Now()
	for i := range 3 {
		cl, err := c.Parse(tok, "fedrisk:bank", time.Second, now, key)
		if err != nil || cl.ConsentID != "cns_1" {
			t.Fatalf("parse %d: %+v %v", i, cl, err)
		}
	}
	if lookups != 1 {
		t.Errorf("%d key lookups for one token, want 1", lookups)
	}
	tampered := tok[:len(tok)-2] + "AA"
	if _, err := c.Parse(tampered, "fedrisk:bank", time.Second, now, key); err == nil {
		t.Error("a tampered token verified")
	}
	if _, err := c.Parse(tok, "fedrisk:bank", time.Second, now.Add(consent.TokenCacheMaxAge+time.Second), key); err != nil || lookups != 3 {
		t.Errorf("after MaxAge: %v, %d lookups (want the signature checked again)", err, lookups)
	}
	if _, err := c.Parse(tok, "fedrisk:bank", time.Second, now.Add(2*time.Hour), key); err == nil {
		t.Error("an expired token was served from the cache")
	}
}
