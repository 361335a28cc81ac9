package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// Cache is the part of the node cache the registry uses (class
// model_cache); cache.Cache satisfies it.
type Cache interface {
	Get(ctx context.Context, class cache.Class, key string) ([]byte, bool, error)
	Set(ctx context.Context, class cache.Class, key string, val []byte, ttl time.Duration) error
}

// Auditor records label changes in the audit log (audit.Log); optional.
type Auditor interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Options configure a Registry. Zero values select the defaults.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log *slog.Logger
	// Auditor, when set, records every promotion and rollback.
	Auditor Auditor
	// RegisteredBy is the actor Register records (default "training").
	RegisteredBy string
	// MaxLoaded bounds the parsed halves kept in memory (default 64).
	MaxLoaded int
}

// Registry is the model registry of one party. It is safe for concurrent
// use.
type Registry struct {
	store Store
	cache Cache // nil: no node cache
	opts  Options

	mu     sync.Mutex
	meta   map[metaKey]Entry      // immutable version rows, without Half
	loaded map[string]*loadedHalf // by halfKey
}

type metaKey struct{ id, version, role string }

// loadedHalf is a verified half document and its parsed model.
type loadedHalf struct {
	half  []byte
	guest *hetero.GuestModel
	host  *hetero.HostModel
}

// New returns a registry over store. c is the node cache (nil for none).
func New(store Store, c Cache, opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RegisteredBy == "" {
		opts.RegisteredBy = "training"
	}
	if opts.MaxLoaded <= 0 {
		opts.MaxLoaded = 64
	}
	return &Registry{store: store, cache: c, opts: opts, meta: map[metaKey]Entry{}, loaded: map[string]*loadedHalf{}}
}

// NextVersion returns the next version of modelID ("1" for a new id).
func (r *Registry) NextVersion(ctx context.Context, modelID string) (string, error) {
	if err := ValidModelID(modelID); err != nil {
		return "", err
	}
	n, err := r.store.NextVersion(ctx, modelID, r.opts.Now())
	if err != nil {
		return "", fmt.Errorf("next version: %w", err)
	}
	return strconv.FormatInt(n, 10), nil
}

// Register stores this party's half of modelID at version. half is the
// exported JSON of a hetero.GuestModel (role "guest") or hetero.HostModel
// (role "host") naming the same model id and version; card is an optional
// JSON model card. Registering the same half again is a no-op; another half
// under the same (model id, version, role) is ErrConflict.
func (r *Registry) Register(ctx context.Context, role string, modelID, version string, half []byte, card []byte) error {
	if err := ValidRole(role); err != nil {
		return err
	}
	if err := ValidModelID(modelID); err != nil {
		return err
	}
	if _, err := ParseVersion(version); err != nil {
		return err
	}
	id, v, err := parseHalf(role, half)
	if err != nil {
		return err
	}
	if id != modelID || v != version {
		return fmt.Errorf("%w: the %s half is of model %.40q version %.40q, not %s version %s", ErrInvalid, role, id, v, modelID, version)
	}
	if len(card) == 0 {
		card = nil
	} else if len(card) > MaxCardBytes || !json.Valid(card) {
		return fmt.Errorf("%w: model card must be JSON of at most %d bytes", ErrInvalid, MaxCardBytes)
	}
	e := Entry{
		ModelID: modelID, Version: version, Role: role, Digest: digest(half),
		Half: bytes.Clone(half), Card: bytes.Clone(card),
		Created: r.opts.Now().UTC().Truncate(time.Microsecond), RegisteredBy: r.opts.RegisteredBy,
	}
	if err := r.store.Insert(ctx, e); err != nil {
		return fmt.Errorf("register %s version %s (%s): %w", modelID, version, role, err)
	}
	r.opts.Log.InfoContext(ctx, "model registered", "model", modelID, "version", version, "role", role, "digest", e.Digest)
	return nil
}

// parseHalf validates a half document and returns the model id and
// version it names.
func parseHalf(role string, half []byte) (id, version string, err error) {
	if len(half) == 0 {
		return "", "", fmt.Errorf("%w: empty model document", ErrInvalid)
	}
	if role == RoleGuest {
		m, err := hetero.ParseGuestModel(bytes.NewReader(half))
		if err != nil {
			return "", "", fmt.Errorf("%w: guest half: %w", ErrInvalid, err)
		}
		return m.ModelID, m.Version, nil
	}
	m, err := hetero.ParseHostModel(bytes.NewReader(half))
	if err != nil {
		return "", "", fmt.Errorf("%w: host half: %w", ErrInvalid, err)
	}
	return m.ModelID, m.Version, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Resolve returns the half this party holds of modelID at ref: a version,
// "stable", "canary" or "" (stable). If this party holds both halves of the
// version, it is the guest's. ErrNotFound when the model, the label or the
// version is unknown.
func (r *Registry) Resolve(ctx context.Context, modelID, ref string) (Entry, error) {
	e, _, err := r.resolve(ctx, modelID, ref, "")
	return e, err
}

// Get is Resolve for one role: the guest's or host's half of modelID at
// ref; role "" means either (the guest's if both exist).
func (r *Registry) Get(ctx context.Context, modelID, ref, role string) (Entry, error) {
	if role != "" {
		if err := ValidRole(role); err != nil {
			return Entry{}, err
		}
	}
	e, _, err := r.resolve(ctx, modelID, ref, role)
	return e, err
}

// GuestModel returns the guest half of modelID at ref (as Resolve) parsed.
func (r *Registry) GuestModel(ctx context.Context, modelID, ref string) (*hetero.GuestModel, Entry, error) {
	e, l, err := r.resolve(ctx, modelID, ref, RoleGuest)
	if err != nil {
		return nil, Entry{}, err
	}
	return l.guest, e, nil
}

// HostModel returns the host half of modelID at version (or a label, as
// Resolve) parsed.
func (r *Registry) HostModel(ctx context.Context, modelID, version string) (*hetero.HostModel, Entry, error) {
	e, l, err := r.resolve(ctx, modelID, version, RoleHost)
	if err != nil {
		return nil, Entry{}, err
	}
	return l.host, e, nil
}

func (r *Registry) resolve(ctx context.Context, modelID, ref, role string) (Entry, *loadedHalf, error) {
	if err := ValidModelID(modelID); err != nil {
		return Entry{}, nil, err
	}
	if ref == "" {
		ref = LabelStable
	}
	labels, err := r.store.Labels(ctx, modelID)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("resolve %s: %w", modelID, err)
	}
	version := ref
	if ref == LabelStable || ref == LabelCanary {
		v, ok := labels[ref]
		if !ok {
			return Entry{}, nil, fmt.Errorf("%w: model %s has no %s version", ErrNotFound, modelID, ref)
		}
		version = v
	} else if _, err := ParseVersion(ref); err != nil {
		return Entry{}, nil, fmt.Errorf("%w (or %q, %q)", err, LabelStable, LabelCanary)
	}
	e, err := r.entry(ctx, modelID, version, role)
	if err != nil {
		return Entry{}, nil, err
	}
	l, err := r.load(ctx, e)
	if err != nil {
		return Entry{}, nil, err
	}
	e.Half = l.half
	e.Labels = labelsOf(labels, version)
	return e, l, nil
}

// entry returns a version row without its half, from memory when seen
// before (rows never change once registered).
func (r *Registry) entry(ctx context.Context, modelID, version, role string) (Entry, error) {
	k := metaKey{modelID, version, role}
	if role != "" {
		r.mu.Lock()
		e, ok := r.meta[k]
		r.mu.Unlock()
		if ok {
			return e, nil
		}
	}
	e, err := r.store.Entry(ctx, modelID, version, role, false)
	if errors.Is(err, ErrNotFound) {
		what := "version " + version
		if role != "" {
			what = role + " half of version " + version
		}
		return Entry{}, fmt.Errorf("%w: model %s has no %s", ErrNotFound, modelID, what)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("resolve %s version %s: %w", modelID, version, err)
	}
	e.Half = nil
	if role != "" {
		r.mu.Lock()
		if len(r.meta) >= 64*r.opts.MaxLoaded {
			clear(r.meta)
		}
		r.meta[k] = e
		r.mu.Unlock()
	}
	return e, nil
}

func halfKey(e Entry) string {
	return e.ModelID + "/" + e.Version + "/" + e.Role + "/" + e.Digest
}

// load returns e's half verified and parsed: from memory, else the node
// cache, else the store.
func (r *Registry) load(ctx context.Context, e Entry) (*loadedHalf, error) {
	key := halfKey(e)
	r.mu.Lock()
	l, ok := r.loaded[key]
	r.mu.Unlock()
	if ok {
		return l, nil
	}
	var half []byte
	if r.cache != nil {
		b, ok, err := r.cache.Get(ctx, cache.ModelCache(), key)
		switch {
		case err != nil:
			r.opts.Log.WarnContext(ctx, "model cache read failed", "err", err)
		case ok && digest(b) == e.Digest:
			half = b
		case ok:
			r.opts.Log.WarnContext(ctx, "model cache entry does not match its digest; reading the store", "model", e.ModelID, "version", e.Version)
		}
	}
	if half == nil {
		full, err := r.store.Entry(ctx, e.ModelID, e.Version, e.Role, true)
		if err != nil {
			return nil, fmt.Errorf("load %s version %s: %w", e.ModelID, e.Version, err)
		}
		if digest(full.Half) != e.Digest {
			return nil, fmt.Errorf("load %s version %s: stored half does not match its digest", e.ModelID, e.Version)
		}
		half = full.Half
		if r.cache != nil {
			if err := r.cache.Set(ctx, cache.ModelCache(), key, half, 0); err != nil {
				r.opts.Log.WarnContext(ctx, "model cache write failed", "err", err)
			}
		}
	}
	l = &loadedHalf{half: half}
	var err error
	if e.Role == RoleGuest {
		l.guest, err = hetero.ParseGuestModel(bytes.NewReader(half))
	} else {
		l.host, err = hetero.ParseHostModel(bytes.NewReader(half))
	}
	if err != nil {
		return nil, fmt.Errorf("load %s version %s: %w", e.ModelID, e.Version, err)
	}
	r.mu.Lock()
	if len(r.loaded) >= r.opts.MaxLoaded {
		for k := range r.loaded { // drop an arbitrary entry
			delete(r.loaded, k)
			break
		}
	}
	r.loaded[key] = l
	r.mu.Unlock()
	return l, nil
}

func labelsOf(labels map[string]string, version string) []string {
	var out []string
	for l, v := range labels {
		if v == version {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// List returns the halves of modelID (without documents), ascending, and
// where its labels point.
func (r *Registry) List(ctx context.Context, modelID string) ([]Entry, map[string]string, error) {
	m, err := r.model(ctx, modelID, false)
	if err != nil {
		return nil, nil, err
	}
	return m.Versions, m.Labels, nil
}

// Model returns modelID with its versions, labels and label history.
func (r *Registry) Model(ctx context.Context, modelID string) (Model, error) {
	return r.model(ctx, modelID, true)
}

func (r *Registry) model(ctx context.Context, modelID string, history bool) (Model, error) {
	if err := ValidModelID(modelID); err != nil {
		return Model{}, err
	}
	vs, err := r.store.Versions(ctx, modelID)
	if errors.Is(err, ErrNotFound) {
		return Model{}, fmt.Errorf("%w: no model %s", ErrNotFound, modelID)
	}
	if err != nil {
		return Model{}, fmt.Errorf("list %s: %w", modelID, err)
	}
	labels, err := r.store.Labels(ctx, modelID)
	if err != nil {
		return Model{}, fmt.Errorf("list %s: %w", modelID, err)
	}
	for i := range vs {
		vs[i].Half = nil
		vs[i].Labels = labelsOf(labels, vs[i].Version)
	}
	m := Model{ID: modelID, Versions: vs, Labels: labels}
	if history {
		if m.History, err = r.store.History(ctx, modelID); err != nil {
			return Model{}, fmt.Errorf("history of %s: %w", modelID, err)
		}
	}
	return m, nil
}

// Models returns every model with its versions and labels (no history).
func (r *Registry) Models(ctx context.Context) ([]Model, error) {
	ids, err := r.store.ModelIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out := make([]Model, 0, len(ids))
	for _, id := range ids {
		m, err := r.model(ctx, id, false)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Promote points label ("stable" or "canary") of modelID at version, at
// once for every later Resolve. Promoting the version the label already
// points at changes nothing (the result's Changed is false).
func (r *Registry) Promote(ctx context.Context, modelID, version, label, actor string) (LabelChange, error) {
	if err := ValidModelID(modelID); err != nil {
		return LabelChange{}, err
	}
	if _, err := ParseVersion(version); err != nil {
		return LabelChange{}, err
	}
	if err := ValidLabel(label); err != nil {
		return LabelChange{}, err
	}
	c, err := r.store.SetLabel(ctx, LabelChange{ModelID: modelID, Label: label, Action: ActionPromote, Version: version,
		Actor: actorOr(actor), At: r.opts.Now().UTC().Truncate(time.Microsecond)})
	if err != nil {
		return LabelChange{}, fmt.Errorf("promote %s version %s to %s: %w", modelID, version, label, err)
	}
	r.record(ctx, c)
	return c, nil
}

// Rollback moves label of modelID back to the version it pointed at
// before its latest promotion (see RollbackTarget); ErrNoRollback when
// there is none.
func (r *Registry) Rollback(ctx context.Context, modelID, label, actor string) (LabelChange, error) {
	if err := ValidModelID(modelID); err != nil {
		return LabelChange{}, err
	}
	if err := ValidLabel(label); err != nil {
		return LabelChange{}, err
	}
	c, err := r.store.Rollback(ctx, LabelChange{ModelID: modelID, Label: label, Action: ActionRollback,
		Actor: actorOr(actor), At: r.opts.Now().UTC().Truncate(time.Microsecond)})
	if err != nil {
		return LabelChange{}, fmt.Errorf("roll back %s of %s: %w", label, modelID, err)
	}
	r.record(ctx, c)
	return c, nil
}

func actorOr(a string) string {
	if a == "" {
		return "system"
	}
	return a
}

// record logs and audits a label change.
func (r *Registry) record(ctx context.Context, c LabelChange) {
	if !c.Changed() {
		return
	}
	r.opts.Log.InfoContext(ctx, "model label moved", "model", c.ModelID, "label", c.Label, "action", c.Action,
		"version", c.Version, "previous", c.Previous, "actor", c.Actor)
	if r.opts.Auditor == nil {
		return
	}
	ev := audit.Event{At: c.At, Actor: c.Actor, Action: "model." + c.Action, Object: c.ModelID,
		Details: map[string]string{"label": c.Label, "version": c.Version, "previous": c.Previous}}
	if _, err := r.opts.Auditor.Append(ctx, ev); err != nil {
		r.opts.Log.ErrorContext(ctx, "audit of a model label change failed", "model", c.ModelID, "err", err)
	}
}
