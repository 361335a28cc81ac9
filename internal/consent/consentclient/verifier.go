// Package consentclient is what a host party uses to check a guest's
// consent tokens: the signature against the guest's JWKS, the audience
// (this host) and purpose, and — the part a JWT alone cannot say — that the
// consent has not been withdrawn.
//
// Withdrawal reaches the host within about a second without asking the
// guest on every request: the verifier follows the guest's revocation
// stream (server-sent events over mutual TLS). While the stream is up, a
// verification the guest confirmed once is cached (at most the runbook's
// consent_tokens TTL, never past the token's exp), and every revoked consent
// id that arrives is refused at once. When the stream is down the verifier
// trusts nothing cached and asks the guest's introspection endpoint every
// time, so a lost stream can make verification slower, never laxer.
package consentclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/consent"
)

// Options configure a Verifier.
type Options struct {
	GuestURL string       // base URL of the guest's consent service
	Issuer   string       // the guest's issuer, e.g. "fedrisk:bank"
	Audience string       // this host's party name
	Client   *http.Client // mTLS client towards the guest
	Leeway   time.Duration
	// CacheTTL bounds a cached verification; default the runbook's
	// consent_tokens TTL (15 min).
	CacheTTL   time.Duration
	MaxEntries int // verification cache bound; default 100k
	Log        *slog.Logger
	Now        func() time.Time
}

// Verifier checks consent tokens for one host. Start Run in a goroutine to
// follow the revocation stream.
type Verifier struct {
	o Options

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
	streaming bool                 // the revocation stream is connected
	gen       uint64               // bumped on every (dis)connection
	revoked   map[string]time.Time // consent id -> forget after
	verified  map[string]entry     // jti -> confirmed result
}

type entry struct {
	consentID string
	until     time.Time
}

// New returns a Verifier.
func New(o Options) *Verifier {
	if o.Leeway <= 0 {
		o.Leeway = 30 * time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = cache.ConsentTokens().TTL
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100_000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	o.GuestURL = strings.TrimRight(o.GuestURL, "/")
	return &Verifier{o: o, keys: map[string]*rsa.PublicKey{}, revoked: map[string]time.Time{}, verified: map[string]entry{}}
}

// ErrUnavailable means the guest could not be asked; the caller should
// treat the token as unverified.
var ErrUnavailable = errors.New("consent service unavailable")

// Verify checks token for purpose. It returns the claims or an error that
// matches consent.ErrTokenRejected (with a *consent.TokenError reason) or
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token, purpose string) (consent.Claims, error) {
	now := v.o.Now()
	claims, err := consent.ParseToken(strings.TrimSpace(token), v.o.Issuer, v.o.Leeway, now, func(kid string) (*rsa.PublicKey, error) {
		return v.key(ctx, kid)
	})
	if err != nil {
		return claims, err
	}
	want := consent.Expect{Audience: v.o.Audience, Purpose: purpose}
	if err := consent.CheckClaims(claims, want); err != nil {
		return claims, err
	}
	v.mu.Lock()
	_, isRevoked := v.revoked[claims.ConsentID]
	e, cached := v.verified[claims.ID]
	streaming, gen := v.streaming, v.gen
	v.mu.Unlock()
	if isRevoked {
		return claims, &consent.TokenError{Code: "revoked", Detail: "consent withdrawn"}
	}
	if streaming && cached && e.consentID == claims.ConsentID && now.Before(e.until) {
		return claims, nil
	}
	active, reason, err := v.introspect(ctx, token, purpose)
	if err != nil {
		return claims, err
	}
	if !active {
		return claims, &consent.TokenError{Code: reason, Detail: "refused by the consent service"}
	}
	until := now.Add(v.o.CacheTTL)
	if exp := claims.ExpiresAt.Time; exp.Before(until) {
		until = exp
	}
	v.mu.Lock()
	// Cache only if the stream stayed up throughout: otherwise a
	// revocation may have been missed.
	if v.streaming && v.gen == gen {
		if _, r := v.revoked[claims.ConsentID]; !r {
			if len(v.verified) >= v.o.MaxEntries {
				v.pruneLocked(now)
			}
			if len(v.verified) < v.o.MaxEntries {
				v.verified[claims.ID] = entry{consentID: claims.ConsentID, until: until}
			}
		}
	}
	v.mu.Unlock()
	return claims, nil
}

func (v *Verifier) pruneLocked(now time.Time) {
	for k, e := range v.verified {
		if !now.Before(e.until) {
			delete(v.verified, k)
		}
	}
	for k, until := range v.revoked {
		if !now.Before(until) {
			delete(v.revoked, k)
		}
	}
}

// Streaming reports whether the revocation stream is connected.
func (v *Verifier) Streaming() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.streaming
}

func (v *Verifier) introspect(ctx context.Context, token, purpose string) (bool, string, error) {
	body, _ := json.Marshal(map[string]string{"token": token, "audience": v.o.Audience, "purpose": purpose})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.o.GuestURL+"/consent/v1/tokens/introspect", bytes.NewReader(body))
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := v.o.Client.Do(req)
	if err != nil {
		return false, "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, "", fmt.Errorf("%w: introspection answered %d", ErrUnavailable, resp.StatusCode)
	}
	var out struct {
		Active bool   `json:"active"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil {
		return false, "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !out.Active && out.Reason == "" {
		out.Reason = "revoked"
	}
	return out.Active, out.Reason, nil
}

// key returns the guest's public key kid, fetching the JWKS when the kid is
// unknown (at most every 10 s, so forged kids cannot hammer the guest).
func (v *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	k, ok := v.keys[kid]
	stale := v.o.Now().Sub(v.fetchedAt) > 10*time.Second
	v.mu.Unlock()
	if ok {
		return k, nil
	}
	if !stale {
		return nil, errors.New("unknown kid")
	}
	if err := v.RefreshKeys(ctx); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, errors.New("unknown kid")
}

// RefreshKeys fetches the guest's JWKS.
func (v *Verifier) RefreshKeys(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.GuestURL+"/.well-known/jwks.json", nil)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.fetchedAt = v.o.Now()
	v.mu.Unlock()
	resp, err := v.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: jwks: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: jwks answered %d", ErrUnavailable, resp.StatusCode)
	}
	keys, err := ParseJWKS(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys = keys
	v.mu.Unlock()
	return nil
}

// ParseJWKS reads the RSA signature keys of a JWK Set.
func ParseJWKS(r io.Reader) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, N, E, Use, Alg string
		} `json:"keys"`
	}
	if err := json.NewDecoder(r).Decode(&set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	out := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 || len(n) < 256 {
			continue // malformed or under 2048 bits
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if exp < 3 || exp%2 == 0 {
			continue
		}
		out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	}
	return out, nil
}

// Run follows the guest's revocation stream until ctx ends, reconnecting
// with backoff. Every (dis)connection empties the verification cache.
func (v *Verifier) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected := v.follow(ctx)
		if connected {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (v *Verifier) setStreaming(on bool) {
	v.mu.Lock()
	v.streaming = on
	v.gen++
	clear(v.verified)
	v.mu.Unlock()
}

// follow reads one connection of the stream; it reports whether it got
// connected at all.
func (v *Verifier) follow(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.GuestURL+"/consent/v1/revocations", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "text/event-stream")
	// The stream outlives the client's request timeout: use its transport.
	client := &http.Client{Transport: v.o.Client.Transport}
	resp, err := client.Do(req)
	if err != nil {
		v.o.Log.WarnContext(ctx, "revocation stream: connect failed", "err", err)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		v.o.Log.WarnContext(ctx, "revocation stream refused", "status", resp.StatusCode)
		return false
	}
	// A silent connection is a dead one: the guest pings every 10 s.
	alive := time.AfterFunc(25*time.Second, cancel)
	defer alive.Stop()
	v.setStreaming(true)
	defer v.setStreaming(false)
	v.o.Log.InfoContext(ctx, "revocation stream connected", "guest", v.o.GuestURL)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 4096)
	event := ""
	for sc.Scan() {
		alive.Reset(25 * time.Second)
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "revoked":
			v.revoke(strings.TrimPrefix(line, "data: "))
		case line == "":
			event = ""
		}
	}
	return true
}

func (v *Verifier) revoke(consentID string) {
	if consentID == "" || len(consentID) > 128 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.revoked) >= v.o.MaxEntries {
		v.pruneLocked(v.o.Now())
	}
	v.revoked[consentID] = v.o.Now().Add(v.o.CacheTTL + 2*v.o.Leeway)
	for jti, e := range v.verified {
		if e.consentID == consentID {
			delete(v.verified, jti)
		}
	}
}
