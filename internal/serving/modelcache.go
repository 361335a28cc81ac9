package serving

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// maxCachedRefs bounds the resolved references kept in memory.
const maxCachedRefs = 1024

// guestEntry is a resolved guest half.
type guestEntry struct {
	model   *hetero.GuestModel
	version string
	at      time.Time
}

type hostEntry struct {
	model *hetero.HostModel
	at    time.Time
}

// modelCache keeps resolved references for a short while, so that the hot
// path asks the registry (a database read for labels) at most once per
// refresh interval and reference. The registry keeps the parsed halves.
type modelCache struct {
	models  Models
	refresh time.Duration
	now     func() time.Time

	mu     sync.Mutex
	guests map[[2]string]*guestEntry
	hosts  map[[2]string]*hostEntry
}

func newModelCache(m Models, refresh time.Duration, now func() time.Time) *modelCache {
	return &modelCache{models: m, refresh: refresh, now: now, guests: map[[2]string]*guestEntry{}, hosts: map[[2]string]*hostEntry{}}
}

// validName accepts model ids, versions and labels: 1..128 characters of
// [A-Za-z0-9._-].
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (c *modelCache) guest(ctx context.Context, id, ref string) (*guestEntry, error) {
	if !validName(id) || !validName(ref) {
		return nil, newErr(ErrInvalid, "invalid_model", "model and version are 1 to 128 characters of letters, digits, '.', '_' and '-'")
	}
	key := [2]string{id, ref}
	now := c.now()
	c.mu.Lock()
	e, ok := c.guests[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.refresh {
		return e, nil
	}
	m, version, err := c.models.GuestModel(ctx, id, ref)
	if err != nil {
		return nil, modelError(err)
	}
	if m == nil || len(m.Features) != len(m.Weights) || len(m.Standardisation.Means) != len(m.Weights) || len(m.Standardisation.Stds) != len(m.Weights) {
		return nil, newErr(ErrUnavailable, "model_invalid", "the guest half of the model is malformed")
	}
	e = &guestEntry{model: m, version: version, at: now}
	c.mu.Lock()
	if len(c.guests) >= maxCachedRefs {
		clear(c.guests)
	}
	c.guests[key] = e
	c.mu.Unlock()
	return e, nil
}

func (c *modelCache) host(ctx context.Context, id, version string) (*hetero.HostModel, error) {
	if !validName(id) || !validName(version) {
		return nil, newErr(ErrInvalid, "invalid_model", "model and version are 1 to 128 characters of letters, digits, '.', '_' and '-'")
	}
	key := [2]string{id, version}
	now := c.now()
	c.mu.Lock()
	e, ok := c.hosts[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.refresh {
		return e.model, nil
	}
	m, err := c.models.HostModel(ctx, id, version)
	if err != nil {
		return nil, modelError(err)
	}
	if m == nil || len(m.Features) != len(m.Weights) {
		return nil, newErr(ErrUnavailable, "model_invalid", "the host half of the model is malformed")
	}
	c.mu.Lock()
	if len(c.hosts) >= maxCachedRefs {
		clear(c.hosts)
	}
	c.hosts[key] = &hostEntry{model: m, at: now}
	c.mu.Unlock()
	return m, nil
}

func modelError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ErrModelNotFound) {
		return wrapErr(ErrNotFound, "model_not_found", err, "no such model, version or label")
	}
	return wrapErr(ErrUnavailable, "models_unavailable", err, "the model registry could not be read")
}
