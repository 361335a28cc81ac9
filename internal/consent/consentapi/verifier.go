package consentapi

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

// The Verifier is the client side: what a host party uses to check a guest's
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

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	GuestURL string       // base URL of the guest's consent service
	Issuer   string       // the guest's issuer, e.g. "fedrisk:bank"
	Audience string       // this host's party name
	Client   *http.Client // mTLS client towards the guest
	Leeway   time.Duration
	// CacheTTL bounds a cached verification; default the runbook's
	// consent_tokens TTL (15 min).
	CacheTTL time.Duration
	// MaxStaleness: cached verifications count only while the revocation
	// stream spoke within this long (default 1 s: the withdrawal bound).
	MaxStaleness time.Duration
	MaxEntries   int // verification cache bound; default 100k
	Log          *slog.Logger
	Now          func() time.Time
}

// Verifier checks consent tokens for one host. Start Run in a goroutine to
// follow the revocation stream.
type Verifier struct {
	o VerifierOptions

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
	streaming bool                 // the revocation stream is connected
	beat      time.Time            // when the stream last completed an event
	lastID    string               // last event id seen, for Last-Event-ID
	gen       uint64               // bumped on every (dis)connection
	revoked   map[string]time.Time // consent id -> forget after
	verified  map[string]entry     // jti -> confirmed result
	parsed    *consent.TokenCache  // tokens whose signature was checked
}

type entry struct {
	consentID, purpose string
	until              time.Time
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.Leeway <= 0 {
		o.Leeway = 30 * time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = cache.ConsentTokens().TTL
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = time.Second
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
	return &Verifier{o: o, keys: map[string]*rsa.PublicKey{}, revoked: map[string]time.Time{}, verified: map[string]entry{},
		parsed: consent.NewTokenCache(o.MaxEntries)}
}

// ErrUnavailable means the guest could not be asked; the caller should
// treat the token as unverified.
var ErrUnavailable = errors.New("consent service unavailable")

// Verify checks token for purpose. It returns the claims or an error that
// matches consent.ErrTokenRejected (with a *consent.TokenError reason) or
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token, purpose string) (consent.Claims, error) {
	now := v.o.Now()
	claims, err := v.parsed.Parse(strings.TrimSpace(token), v.o.Issuer, v.o.Leeway, now, func(kid string) (*rsa.PublicKey, error) {
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
	fresh, gen := v.freshLocked(now), v.gen
	v.mu.Unlock()
	if isRevoked {
		return claims, &consent.TokenError{Code: "revoked", Detail: "consent withdrawn"}
	}
	if fresh && cached && e.consentID == claims.ConsentID && now.Before(e.until) {
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
	if v.freshLocked(v.o.Now()) && v.gen == gen {
		if _, r := v.revoked[claims.ConsentID]; !r {
			if len(v.verified) >= v.o.MaxEntries {
				v.pruneLocked(now)
			}
			if len(v.verified) < v.o.MaxEntries {
				v.verified[claims.ID] = entry{consentID: claims.ConsentID, purpose: claims.Purpose, until: until}
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

// freshLocked reports whether the stream is connected and spoke recently
// enough for cached verifications to count.
func (v *Verifier) freshLocked(now time.Time) bool {
	return v.streaming && now.Sub(v.beat) < v.o.MaxStaleness
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
		return nil, consent.ErrUnknownKey
	}
	if err := v.RefreshKeys(ctx); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, consent.ErrUnknownKey
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.GuestURL+"/consent/v1/revocations?party="+v.o.Audience, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "text/event-stream")
	v.mu.Lock()
	if v.lastID != "" {
		req.Header.Set("Last-Event-ID", v.lastID)
	}
	v.mu.Unlock()
	// The stream outlives the client's request timeout: use its transport.
	client := &http.Client{Transport: v.o.Client.Transport}
	resp, err := client.Do(req)
	if err != nil {
		v.o.Log.WarnContext(ctx, "revocation stream: connect failed", "err", err)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		v.mu.Lock()
		v.lastID = "" // the guest does not know our position (restored database?): start afresh
		v.mu.Unlock()
	}
	if resp.StatusCode != http.StatusOK {
		v.o.Log.WarnContext(ctx, "revocation stream refused", "status", resp.StatusCode)
		return false
	}
	// A silent connection is a dead one: the guest sends a heartbeat every
	// 250 ms. Cached verifications stop counting after MaxStaleness anyway.
	alive := time.AfterFunc(10*time.Second, cancel)
	defer alive.Stop()
	v.setStreaming(true)
	defer v.setStreaming(false)
	v.o.Log.InfoContext(ctx, "revocation stream connected", "url", v.o.GuestURL)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 4096)
	event, id := "", ""
	for sc.Scan() {
		alive.Reset(10 * time.Second)
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch event {
			case "revoked":
				v.revoke(data)
			case "purge":
				v.purge(data)
			}
		case line == "": // end of an event: it is applied, so it counts as seen
			v.mu.Lock()
			if id != "" {
				v.lastID = id
			}
			v.beat = v.o.Now()
			v.mu.Unlock()
			event, id = "", ""
		}
	}
	return true
}

// purge forgets every cached verification for purpose.
func (v *Verifier) purge(purpose string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for jti, e := range v.verified {
		if e.purpose == purpose {
			delete(v.verified, jti)
		}
	}
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
