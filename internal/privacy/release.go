package privacy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
)

// ReleaseCache is what a Releaser needs of a cache: internal/cache's Cache
// (Memory or Redis) satisfies it.
type ReleaseCache interface {
	Get(ctx context.Context, class cache.Class, key string) (val []byte, ok bool, err error)
	Set(ctx context.Context, class cache.Class, key string, val []byte, ttl time.Duration) error
}

// ReleaseClass is the cache class of released noisy values; its TTL (1h)
// is the default cache window.
func ReleaseClass() cache.Class { return cache.Class{Name: "privacy_releases", TTL: time.Hour} }

// refundTimeout bounds a refund, which runs even when the request's
// context is done.
const refundTimeout = 10 * time.Second

// ReleaseKey identifies what a release is about: a subject's pseudonym, a
// model version and a feature snapshot (e.g. the feature store's version
// of the subject's row). It is a hex SHA-256 of the three, length-prefixed
// so that no two triples share a key, and names no subject.
func ReleaseKey(subject, modelVersion, snapshot string) string {
	h := sha256.New()
	io.WriteString(h, "fedrisk/privacy/release-key/v1")
	writeParts(h, subject, modelVersion, snapshot)
	return hex.EncodeToString(h.Sum(nil))
}

func writeParts(h hash.Hash, parts ...string) {
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		io.WriteString(h, p)
	}
}

// ReleaserOptions configures NewReleaser.
type ReleaserOptions struct {
	// Mechanism clips and noises the scores (required).
	Mechanism Mechanism
	// Ledger is charged before each fresh noisy release (required unless
	// the mechanism is NoNoise).
	Ledger Charger
	// Cache keeps released values for the cache window (required unless
	// the mechanism is NoNoise). cache.Disabled turns idempotence off: then
	// every request is charged and gets fresh noise.
	Cache ReleaseCache
	// Class is the cache class; zero means ReleaseClass().
	Class cache.Class
	// Window is how long a released value is returned again; zero means
	// Class.TTL.
	Window time.Duration
	// Random is the source of random bytes; nil means crypto/rand.Reader.
	Random io.Reader
}

// Releaser releases clipped, noised partial scores, charged to a ledger
// and idempotent within the cache window. It is safe for concurrent use.
type Releaser struct {
	mech    Mechanism
	ledger  Charger
	cache   ReleaseCache
	class   cache.Class
	window  time.Duration
	sampler *Sampler
	locks   keyLocks
}

// NewReleaser returns a Releaser, or ErrInvalid for incomplete options.
func NewReleaser(o ReleaserOptions) (*Releaser, error) {
	if o.Mechanism.Kind() == "" {
		return nil, fmt.Errorf("%w: releaser needs a mechanism", ErrInvalid)
	}
	if o.Class == (cache.Class{}) {
		o.Class = ReleaseClass()
	}
	if o.Window <= 0 {
		o.Window = o.Class.TTL
	}
	if o.Mechanism.Noisy() {
		switch {
		case o.Ledger == nil:
			return nil, fmt.Errorf("%w: releaser needs a ledger", ErrInvalid)
		case o.Cache == nil:
			return nil, fmt.Errorf("%w: releaser needs a cache", ErrInvalid)
		case o.Window <= 0:
			return nil, fmt.Errorf("%w: releaser needs a cache window", ErrInvalid)
		}
	}
	return &Releaser{
		mech: o.Mechanism, ledger: o.Ledger, cache: o.Cache, class: o.Class, window: o.Window,
		sampler: NewSampler(o.Random), locks: keyLocks{m: map[string]*keyLock{}},
	}, nil
}

// Mechanism returns the releaser's mechanism.
func (r *Releaser) Mechanism() Mechanism { return r.mech }

// Request is one partial score to release.
type Request struct {
	Party        string // the requesting party
	Purpose      string
	Subject      string // the subject's pseudonym
	ModelVersion string
	Snapshot     string // the feature snapshot the score was computed from
	Score        float64
}

// Release is a released partial score.
type Release struct {
	// Value is the released score: (clipped score + noise) / 2^FracBits,
	// or for NoNoise the clipped score exactly.
	Value float64
	// Fixed is the release in fixed-point units.
	Fixed int64
	// Cached is true when Value was released before within the cache
	// window and was returned again without a charge.
	Cached bool
	// Charge is the charge paid for a fresh noisy release (zero otherwise).
	Charge Charge
}

// Release clips req.Score, and either returns the value released for the
// same (party, purpose, subject, model version, snapshot) within the cache
// window, free, or charges the ledger, draws fresh noise, caches the
// result and returns it. A charge is refunded when no noise could be
// drawn; once a value is drawn it stays charged. Budget exhaustion is an
// error matching ErrBudgetExhausted (an *ExhaustedError, whose OnExhausted
// the caller acts on).
func (r *Releaser) Release(ctx context.Context, req Request) (Release, error) {
	key := Key{Party: req.Party, Subject: req.Subject, Purpose: req.Purpose}
	if err := key.Validate(); err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	if math.IsNaN(req.Score) {
		return Release{}, fmt.Errorf("release: %w: score is NaN", ErrInvalid)
	}
	if !r.mech.Noisy() {
		fixed, value, err := r.mech.Apply(r.sampler, req.Score)
		if err != nil {
			return Release{}, fmt.Errorf("release: %w", err)
		}
		return Release{Value: value, Fixed: fixed}, nil
	}

	ck := r.cacheKey(req)
	unlock, err := r.locks.lock(ctx, ck)
	if err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	defer unlock()
	if fixed, ok := r.cached(ctx, ck); ok {
		return Release{Value: FromFixed(fixed), Fixed: fixed, Cached: true}, nil
	}
	ch, err := r.ledger.Charge(ctx, key, r.mech.Cost())
	if err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	fixed, value, err := r.mech.Apply(r.sampler, req.Score)
	if err != nil {
		// No noisy value exists: the charge bought nothing.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundTimeout)
		defer cancel()
		if rerr := r.ledger.Refund(rctx, ch.ID); rerr != nil {
			return Release{}, fmt.Errorf("release: %w (refund of the charge failed: %w)", err, rerr)
		}
		return Release{}, fmt.Errorf("release: %w", err)
	}
	// A failed Set costs idempotence, not privacy: the value is charged,
	// and a repeat is charged again for fresh noise.
	_ = r.cache.Set(ctx, r.class, ck, encodeCached(fixed), r.window)
	return Release{Value: value, Fixed: fixed, Charge: ch}, nil
}

// cacheKey scopes a release to the requesting party, the purpose and the
// mechanism's parameters.
func (r *Releaser) cacheKey(req Request) string {
	h := sha256.New()
	io.WriteString(h, "fedrisk/privacy/release-cache/v1")
	writeParts(h, req.Party, req.Purpose, r.mech.String(), ReleaseKey(req.Subject, req.ModelVersion, req.Snapshot))
	return hex.EncodeToString(h.Sum(nil))
}

// cached returns the value stored under ck. A cache error or an
// unreadable entry counts as a miss: the request is then charged.
func (r *Releaser) cached(ctx context.Context, ck string) (int64, bool) {
	b, ok, err := r.cache.Get(ctx, r.class, ck)
	if err != nil || !ok {
		return 0, false
	}
	v, err := decodeCached(b)
	return v, err == nil
}

const cachedPrefix = "v1:"

func encodeCached(fixed int64) []byte {
	return strconv.AppendInt([]byte(cachedPrefix), fixed, 10)
}

var errBadCached = errors.New("unreadable cached release")

func decodeCached(b []byte) (int64, error) {
	s, ok := strings.CutPrefix(string(b), cachedPrefix)
	if !ok {
		return 0, errBadCached
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || s != strconv.FormatInt(v, 10) {
		return 0, errBadCached
	}
	return v, nil
}

// keyLocks serialises the requests for one cache key in this process, so
// that concurrent identical requests draw (and pay for) one value.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock waits for key's lock, or for ctx to be done.
func (k *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
