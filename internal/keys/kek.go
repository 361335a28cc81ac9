package keys

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"time"
)

// errKEKGone: the version is retired (or unknown) in the database.
var errKEKGone = errors.New("keys: KEK version no longer available")

// KEKVersion describes one KEK version (for status pages and the CLI).
type KEKVersion struct {
	Version   int       `json:"version"`
	State     KEKState  `json:"state"`
	DataKeys  int       `json:"data_keys"` // live data keys it wraps
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// KEKStatus lists every KEK version, lowest first.
func (m *Manager) KEKStatus(ctx context.Context) ([]KEKVersion, error) {
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return nil, fmt.Errorf("KEK status: %w", err)
	}
	counts, err := m.store.DataKeyCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("KEK status: %w", err)
	}
	out := make([]KEKVersion, len(recs))
	for i, r := range recs {
		out[i] = KEKVersion{Version: r.Version, State: r.State, DataKeys: counts[r.Version], CreatedAt: r.CreatedAt, RetiredAt: r.RetiredAt}
	}
	return out, nil
}

// ensureKEK creates version 1 in an empty database and loads the KEKs.
func (m *Manager) ensureKEK(ctx context.Context) error {
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return fmt.Errorf("keys: load KEKs: %w", err)
	}
	if len(recs) == 0 {
		err := m.store.AddKEK(ctx, m.newKEK(1))
		switch {
		case err == nil:
			m.log.Info("created KEK", "version", 1)
		case errors.Is(err, ErrConflict): // another node created it first
		default:
			return fmt.Errorf("keys: create KEK: %w", err)
		}
	}
	return m.loadKEKs(ctx)
}

func (m *Manager) newKEK(version int) KEKRecord {
	kek := randomBytes(32)
	defer clear(kek)
	return KEKRecord{Version: version, State: KEKActive, Wrapped: seal(m.wrap, kek, kekAAD(version)), CreatedAt: m.now()}
}

// loadKEKs replaces the in-memory KEKs with the database's: it unwraps every
// version that is not retired and forgets retired ones.
func (m *Manager) loadKEKs(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return fmt.Errorf("keys: load KEKs: %w", err)
	}
	keks, active := map[int]cipher.AEAD{}, 0
	for _, r := range recs {
		if r.State == KEKRetired {
			continue
		}
		kek, err := open(m.wrap, r.Wrapped, kekAAD(r.Version))
		if err != nil {
			return fmt.Errorf("%w (KEK version %d does not unwrap)", ErrRootKeyMismatch, r.Version)
		}
		a, err := newAEAD(kek)
		clear(kek)
		if err != nil {
			return fmt.Errorf("keys: KEK version %d: %w", r.Version, err)
		}
		keks[r.Version] = a
		if r.State == KEKActive {
			active = r.Version
		}
	}
	if active == 0 {
		return errors.New("keys: the database has no active KEK")
	}
	m.kekMu.Lock()
	m.keks, m.activeKEK = keks, active
	m.kekMu.Unlock()
	return nil
}

// active returns the active KEK as last loaded.
func (m *Manager) active() (int, cipher.AEAD) {
	m.kekMu.RLock()
	defer m.kekMu.RUnlock()
	return m.activeKEK, m.keks[m.activeKEK]
}

// kek returns an unwrapped KEK version, reloading once when it is not in
// memory (another node may have rotated); errKEKGone when it is retired.
func (m *Manager) kek(ctx context.Context, version int) (cipher.AEAD, error) {
	get := func() cipher.AEAD {
		m.kekMu.RLock()
		defer m.kekMu.RUnlock()
		return m.keks[version]
	}
	if a := get(); a != nil {
		return a, nil
	}
	if err := m.loadKEKs(ctx); err != nil {
		return nil, err
	}
	if a := get(); a != nil {
		return a, nil
	}
	return nil, errKEKGone
}

// RotateKEK creates KEK version n+1, re-wraps every data key onto it and
// retires the older versions; it returns the new active version. When a
// rotation is already in progress (started here or by another node, and
// perhaps interrupted) it finishes that one instead of starting another.
// progress, if not nil, is called with the data keys re-wrapped so far and
// the number to do. Encryption and decryption keep working meanwhile.
func (m *Manager) RotateKEK(ctx context.Context, progress func(done, total int)) (int, error) {
	m.rotateKEKLock.Lock()
	defer m.rotateKEKLock.Unlock()
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return 0, fmt.Errorf("rotate KEK: %w", err)
	}
	latest, inProgress := 0, false
	for _, r := range recs {
		latest = max(latest, r.Version)
		inProgress = inProgress || r.State == KEKRetiring
	}
	if !inProgress {
		err := m.store.AddKEK(ctx, m.newKEK(latest+1))
		switch {
		case err == nil:
			m.log.Info("KEK rotation started", "version", latest+1)
		case errors.Is(err, ErrRotationInProgress), errors.Is(err, ErrConflict):
			m.log.Info("KEK rotation already started by another node; joining it")
		default:
			return 0, fmt.Errorf("rotate KEK: %w", err)
		}
	}
	return m.finishRotation(ctx, progress)
}

// ResumeKEK finishes a KEK rotation in progress (a no-op when there is none)
// and returns the active version.
func (m *Manager) ResumeKEK(ctx context.Context, progress func(done, total int)) (int, error) {
	m.rotateKEKLock.Lock()
	defer m.rotateKEKLock.Unlock()
	return m.finishRotation(ctx, progress)
}

func (m *Manager) finishRotation(ctx context.Context, progress func(done, total int)) (int, error) {
	if progress == nil {
		progress = func(int, int) {}
	}
	if err := m.loadKEKs(ctx); err != nil {
		return 0, fmt.Errorf("rotate KEK: %w", err)
	}
	active, _ := m.active()
	counts, err := m.store.DataKeyCounts(ctx)
	if err != nil {
		return 0, fmt.Errorf("rotate KEK: %w", err)
	}
	total, done := 0, 0
	for v, n := range counts {
		if v < active {
			total += n
		}
	}
	progress(0, total)
	for try := 1; ; try++ {
		if err := m.rewrapAll(ctx, active, func(n int) {
			done = min(done+n, total)
			progress(done, total)
		}); err != nil {
			return 0, fmt.Errorf("rotate KEK: %w", err)
		}
		pending, err := m.retireOld(ctx)
		if err != nil {
			return 0, fmt.Errorf("rotate KEK: %w", err)
		}
		if !pending {
			break
		}
		if try == attempts {
			return 0, fmt.Errorf("rotate KEK: old versions still in use after %d passes: %w", attempts, ErrConflict)
		}
	}
	if err := m.loadKEKs(ctx); err != nil { // forget retired material
		return 0, fmt.Errorf("rotate KEK: %w", err)
	}
	return active, nil
}

// rewrapAll moves every live data key below version active onto it, one
// transaction per batch, and reports each batch's size.
func (m *Manager) rewrapAll(ctx context.Context, active int, batchDone func(int)) error {
	to, err := m.kek(ctx, active)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := m.store.StaleDataKeys(ctx, active, rewrapBatch)
		if err != nil || len(batch) == 0 {
			return err
		}
		rs := make([]Rewrap, len(batch))
		for i, d := range batch {
			from, err := m.kek(ctx, d.KEKVersion)
			if err != nil {
				return fmt.Errorf("KEK version %d: %w", d.KEKVersion, err)
			}
			dek, err := open(from, d.Wrapped, dekAAD(d.ID, d.KEKVersion))
			if err != nil {
				return fmt.Errorf("unwrap a data key under KEK version %d: %w", d.KEKVersion, err)
			}
			rs[i] = Rewrap{ID: d.ID, From: d.KEKVersion, To: active, Wrapped: seal(to, dek, dekAAD(d.ID, active))}
			clear(dek)
		}
		if _, err := m.store.RewrapDataKeys(ctx, rs); err != nil {
			return err
		}
		batchDone(len(batch))
	}
}

// retireOld retires every retiring version; pending reports one that a data
// key still used.
func (m *Manager) retireOld(ctx context.Context) (pending bool, err error) {
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.State != KEKRetiring {
			continue
		}
		switch err := m.store.RetireKEK(ctx, r.Version, m.now()); {
		case err == nil:
			m.log.Info("KEK retired and erased", "version", r.Version)
		case errors.Is(err, ErrConflict):
			pending = true // still used, or retired by another node: the next pass tells
		default:
			return false, err
		}
	}
	return pending, nil
}
