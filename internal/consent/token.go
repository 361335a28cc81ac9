package consent

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/cache"
)

// Token types (the JWT "typ" header). Explicit types keep a receipt from
// ever being accepted as a token and the other way round (RFC 8725 §3.11).
const (
	TokenType   = "consent+jwt"
	ReceiptType = "consent-receipt+jwt"
)

// Claims are the claims of a consent token.
type Claims struct {
	Purpose       string `json:"purpose"`
	ConsentID     string `json:"consent_id"`
	PolicyVersion int    `json:"policy_version"`
	// HostRef is HostRef(subject_ref_key, audience, subject): present when
	// the issuer has the federation's subject reference key.
	HostRef string `json:"href,omitempty"`
	jwt.RegisteredClaims
}

// Token is an issued consent token.
type Token struct {
	Token     string    `json:"token"`
	TokenType string    `json:"token_type"` // "consent+jwt"
	ConsentID string    `json:"consent_id"`
	Audience  string    `json:"audience"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueToken issues a consent token for an active consent. Its audience is
// the consent's party; it never outlives the consent.
func (s *Service) IssueToken(ctx context.Context, consentID, actor string) (Token, error) {
	if !validConsentID(consentID) {
		return Token{}, fmt.Errorf("issue token: %w", ErrNotFound)
	}
	c, err := s.store.GetConsent(ctx, consentID)
	if err != nil {
		return Token{}, fmt.Errorf("issue token: %w", err)
	}
	now := s.now()
	if !c.Usable(now) {
		reason := string(c.EffectiveStatus(now))
		if c.NeedsRenewal {
			reason = "needs renewal under the current policy"
		}
		return Token{}, fmt.Errorf("issue token: %w: %s", ErrNotActive, reason)
	}
	exp := now.Add(s.cfg.TokenTTL)
	if c.ExpiresAt.Before(exp) {
		exp = c.ExpiresAt
	}
	href, err := s.hostRef(ctx, c)
	if err != nil {
		return Token{}, fmt.Errorf("issue token: subject reference: %w", err)
	}
	claims := Claims{
		Purpose: c.Purpose, ConsentID: c.ID, PolicyVersion: c.PolicyVersion, HostRef: href,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: s.tokenSubject(c), Audience: jwt.ClaimStrings{c.Party},
			ID: randomID(""), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	signed, err := s.sign(ctx, TokenType, claims)
	if err != nil {
		return Token{}, fmt.Errorf("issue token: %w", err)
	}
	if _, err := s.auditor.Append(ctx, audit.Event{At: now, Actor: actor, Action: "token.issue", Subject: c.SubjectRef, Object: c.ID,
		Details: map[string]string{"jti": claims.ID, "audience": c.Party, "exp": strconv.FormatInt(exp.Unix(), 10)}}); err != nil {
		return Token{}, fmt.Errorf("issue token: audit: %w", err)
	}
	return Token{Token: signed, TokenType: TokenType, ConsentID: c.ID, Audience: c.Party, ExpiresAt: exp}, nil
}

func (s *Service) sign(ctx context.Context, typ string, claims jwt.Claims) (string, error) {
	kid, key, err := s.keys.Signer(ctx)
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = kid
	t.Header["typ"] = typ
	return t.SignedString(key)
}

// TokenError is a failed verification with a stable reason code.
type TokenError struct {
	Code   string // malformed, bad_signature, unknown_key, wrong_type, expired, not_yet_valid, wrong_issuer, wrong_audience, wrong_purpose, revoked
	Detail string
}

func (e *TokenError) Error() string { return "consent token rejected: " + e.Code + ": " + e.Detail }

// ErrUnknownKey is what a key lookup returns for a kid it does not know; any
// other lookup error means the keys could not be read (ErrKeyUnavailable),
// which is not the token's fault.
var (
	ErrUnknownKey     = errors.New("unknown signing key")
	ErrKeyUnavailable = errors.New("signing keys unavailable")
)

// Clean makes an untrusted string safe for logs and audit details: at most
// 64 characters from [A-Za-z0-9._:-], anything else replaced by '?'.
func Clean(v string) string {
	if len(v) > 64 {
		v = v[:64]
	}
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			b[i] = '?'
		}
	}
	return string(b)
}

// ErrTokenRejected matches every *TokenError with errors.Is.
var ErrTokenRejected = errors.New("consent token rejected")

// Is makes errors.Is(err, ErrTokenRejected) true for any TokenError.
func (e *TokenError) Is(target error) bool { return target == ErrTokenRejected }

func reject(code, format string, args ...any) error {
	return &TokenError{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Expect is what the verifier requires of a token.
type Expect struct {
	Audience string // the host party that is about to use the data
	Purpose  string // the purpose it uses it for
}

// Verify checks a consent token: RS256 signature by a published key,
// explicit type, issuer, audience, purpose, time window, and that its
// consent is still active. A cached positive result is used only after the
// denylist check, so a withdrawal is seen at once. Failures are audited.
func (s *Service) Verify(ctx context.Context, token string, want Expect, actor string) (Claims, error) {
	claims, err := s.verify(ctx, token, want)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			// Nothing unverified becomes the entry's subject or object (a
			// forged token must not write into someone's record); the
			// claims go, cleaned, into the details, marked unverified.
			sum := sha256.Sum256([]byte(token))
			details := map[string]string{"reason": te.Code, "audience": Clean(want.Audience), "purpose": Clean(want.Purpose),
				"token_sha256": hex.EncodeToString(sum[:8])}
			if claims.ConsentID != "" {
				details["unverified_consent_id"] = Clean(claims.ConsentID)
			}
			if _, aerr := s.failures.Append(ctx, audit.Event{Actor: actor, Action: "token.verify_failed", Details: details}); aerr != nil {
				s.log.WarnContext(ctx, "audit of a failed verification failed", "err", aerr)
			}
		}
		return claims, err
	}
	return claims, nil
}

// ParseToken checks a token's signature, type and time window with the
// given key lookup, and returns its claims. Hosts use it with the guest's
// JWKS; the guest with its own keys.
func ParseToken(token, issuer string, leeway time.Duration, now time.Time, key func(kid string) (*rsa.PublicKey, error)) (Claims, error) {
	var claims Claims
	var keyErr error // the key lookup failed for another reason than an unknown kid
	if len(token) > 8192 {
		return claims, reject("malformed", "token longer than 8192 bytes")
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}), // no alg:none, no HS256 with the public key
		jwt.WithLeeway(leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != TokenType {
			return nil, reject("wrong_type", "typ %q, want %q", typ, TokenType)
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, reject("unknown_key", "no kid")
		}
		k, err := key(kid)
		if errors.Is(err, ErrUnknownKey) {
			return nil, reject("unknown_key", "kid %q is not a published key", Clean(kid))
		}
		if err != nil {
			keyErr = err
			return nil, err
		}
		return k, nil
	})
	if err != nil {
		var te *TokenError
		switch {
		case keyErr != nil:
			return claims, fmt.Errorf("%w: %w", ErrKeyUnavailable, keyErr)
		case errors.As(err, &te):
			return claims, te
		case errors.Is(err, jwt.ErrTokenMalformed):
			return claims, reject("malformed", "not a JWT")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return claims, reject("bad_signature", "signature or algorithm invalid")
		case errors.Is(err, jwt.ErrTokenExpired):
			return claims, reject("expired", "token expired")
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return claims, reject("not_yet_valid", "token not valid yet")
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return claims, reject("malformed", "a required claim is missing")
		}
		return claims, reject("malformed", "%v", err)
	}
	if claims.Issuer != issuer {
		return claims, reject("wrong_issuer", "issuer %q", claims.Issuer)
	}
	if claims.ConsentID == "" || claims.ID == "" || claims.Subject == "" || claims.NotBefore == nil {
		return claims, reject("malformed", "consent_id, jti, sub and nbf are required")
	}
	return claims, nil
}

// CheckClaims checks audience and purpose.
func CheckClaims(c Claims, want Expect) error {
	if want.Audience == "" || len(c.Audience) != 1 || c.Audience[0] != want.Audience {
		return reject("wrong_audience", "audience %v, want %q", []string(c.Audience), want.Audience)
	}
	if want.Purpose == "" || c.Purpose != want.Purpose {
		return reject("wrong_purpose", "purpose %q, want %q", c.Purpose, want.Purpose)
	}
	return nil
}

func (s *Service) verify(ctx context.Context, token string, want Expect) (Claims, error) {
	now := s.cfg.Now()
	claims, err := s.parsed.Parse(strings.TrimSpace(token), s.cfg.Issuer, s.cfg.Leeway, now, func(kid string) (*rsa.PublicKey, error) {
		return s.keys.PublicKey(ctx, kid)
	})
	if err != nil {
		return claims, err
	}
	if err := CheckClaims(claims, want); err != nil {
		return claims, err
	}
	if denied, _, err := s.cache.Get(ctx, cache.ConsentTokens(), denyKey(claims.ConsentID)); err == nil && denied != nil {
		return claims, reject("revoked", "consent withdrawn")
	}
	if at, found, err := s.cache.Get(ctx, cache.ConsentTokens(), okKey(claims.ConsentID)); err == nil && found {
		// The consent was confirmed active at log position at; it still is
		// unless the revocation log says otherwise since (a withdrawal wins
		// over the cache even when the cache missed its denial), and a
		// newer policy that asks for renewal overrides that too.
		seq, _ := strconv.ParseInt(string(at), 10, 64)
		pv, hasPV, err := s.cache.Get(ctx, cache.ConsentTokens(), policyKey(claims.Purpose))
		if current, _ := strconv.Atoi(string(pv)); err == nil && (!hasPV || claims.PolicyVersion >= current) &&
			s.watch.trusts(claims.ConsentID, claims.Purpose, seq, now) {
			return claims, nil
		}
	}
	if !validConsentID(claims.ConsentID) {
		return claims, reject("revoked", "unknown consent")
	}
	// The log's head before the consent is read: a revocation after it is
	// one the watch will know of, so the cached result may name it.
	var at int64 = -1
	if s.cfg.RevocationLog != nil {
		if h, err := s.cfg.RevocationLog.Head(ctx); err == nil {
			at = h
		}
	}
	c, err := s.store.GetConsent(ctx, claims.ConsentID)
	if errors.Is(err, ErrNotFound) {
		return claims, reject("revoked", "unknown consent")
	}
	if err != nil {
		return claims, fmt.Errorf("verify token: %w", err)
	}
	if !c.Usable(now) || c.Party != want.Audience || c.Purpose != want.Purpose {
		return claims, reject("revoked", "consent is %s", c.EffectiveStatus(now))
	}
	// Cache that the consent is active (not the token: each token's
	// signature and times are checked every time). Withdrawal deletes it.
	ttl := c.ExpiresAt.Sub(now)
	if ttl > cache.ConsentTokens().TTL {
		ttl = cache.ConsentTokens().TTL
	}
	if ttl > 0 && at >= 0 {
		if err := s.cache.Set(ctx, cache.ConsentTokens(), okKey(c.ID), []byte(strconv.FormatInt(at, 10)), ttl); err != nil {
			s.log.DebugContext(ctx, "verification cache write failed", "err", err)
		}
	}
	return claims, nil
}

// tokenSubject is a token's sub: a pseudonym of the subject for the
// token's audience alone (keyed, from the subject's own pseudonym), so two
// hosts cannot link the subjects of their tokens; each host sees the same
// sub for the same subject.
func (s *Service) tokenSubject(c Consent) string {
	return s.crypto.Pseudonym([]byte("fedrisk/token-sub/v1\x00" + c.Party + "\x00" + c.SubjectRef))
}

// Issuer is the iss of a party's consent tokens and receipts.
func Issuer(party string) string { return "fedrisk:" + party }
