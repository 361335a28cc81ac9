package consent

import (
	"crypto/rsa"
	"crypto/sha256"
	"sync"
	"time"
)

// TokenCache remembers tokens whose signature, type, issuer and time
// window were checked, so that a token presented again (a subject scored
// repeatedly) skips the JSON parsing and the RSA verification. Entries are
// keyed by the SHA-256 of the whole token, so only the same signed bytes
// hit; they live at most MaxAge (a retired signing key stops verifying
// within it) and never past the token's expiry. Revocation and consent
// checks are the caller's, on every use. Safe for concurrent use.
type TokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]cachedClaims
	max     int
}

type cachedClaims struct {
	claims Claims
	until  time.Time
}

// TokenCacheMaxAge bounds how long a parsed token is reused.
const TokenCacheMaxAge = time.Minute

// NewTokenCache returns a cache of at most max tokens (0: 100,000).
func NewTokenCache(max int) *TokenCache {
	if max <= 0 {
		max = 100_000
	}
	return &TokenCache{entries: map[[32]byte]cachedClaims{}, max: max}
}

// Parse returns ParseToken's result for token, from the cache when the
// same token was parsed within its lifetime.
func (c *TokenCache) Parse(token, issuer string, leeway time.Duration, now time.Time, key func(kid string) (*rsa.PublicKey, error)) (Claims, error) {
	if c == nil {
		return ParseToken(token, issuer, leeway, now, key)
	}
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.claims, nil
	}
	claims, err := ParseToken(token, issuer, leeway, now, key)
	if err != nil {
		return claims, err
	}
	until := now.Add(TokenCacheMaxAge)
	if claims.ExpiresAt != nil && claims.ExpiresAt.Time.Before(until) {
		until = claims.ExpiresAt.Time
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = cachedClaims{claims: claims, until: until}
	c.mu.Unlock()
	return claims, nil
}
