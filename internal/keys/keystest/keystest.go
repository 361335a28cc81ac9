// Package keystest is the conformance suite of keys.Store: every backend
// runs the same cases (see sqlkeys' tests for SQLite and PostgreSQL).
package keystest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/keys"
)

// Run runs the suite; newStore returns a store over a fresh, empty database.
func Run(t *testing.T, newStore func(t *testing.T) keys.Store) {
	t.Run("KEKLifecycle", func(t *testing.T) { testKEKLifecycle(t, newStore(t)) })
	t.Run("DataKeys", func(t *testing.T) { testDataKeys(t, newStore(t)) })
	t.Run("SigningKeys", func(t *testing.T) { testSigningKeys(t, newStore(t)) })
	t.Run("ConcurrentAddKEK", func(t *testing.T) { testConcurrentAddKEK(t, newStore(t)) })
	t.Run("ConcurrentInitSigningKeys", func(t *testing.T) { testConcurrentInitSigning(t, newStore(t)) })
}

var t0 = time.UnixMicro(1_750_000_000_123_456).UTC()

func kek(v int) keys.KEKRecord {
	return keys.KEKRecord{Version: v, State: keys.KEKActive, Wrapped: []byte(fmt.Sprintf("wrapped-kek-%d", v)), CreatedAt: t0.Add(time.Duration(v) * time.Hour)}
}

func dek(id string, v int) keys.DataKeyRecord {
	return keys.DataKeyRecord{ID: id, KEKVersion: v, Wrapped: []byte("wrapped-" + id), CreatedAt: t0}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// states returns "v1=state v2=state ..." for compact comparisons.
func states(t *testing.T, s keys.Store) string {
	t.Helper()
	recs, err := s.KEKs(context.Background())
	must(t, err)
	var b bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&b, "v%d=%s ", r.Version, r.State)
	}
	return b.String()
}

func counts(t *testing.T, s keys.Store) string {
	t.Helper()
	c, err := s.DataKeyCounts(context.Background())
	must(t, err)
	return fmt.Sprint(c)
}

func testKEKLifecycle(t *testing.T, s keys.Store) {
	ctx := context.Background()
	if recs, err := s.KEKs(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: KEKs = %v, %v", recs, err)
	}
	must(t, s.AddKEK(ctx, kek(1)))
	recs, err := s.KEKs(ctx)
	must(t, err)
	if len(recs) != 1 || recs[0].Version != 1 || recs[0].State != keys.KEKActive || !bytes.Equal(recs[0].Wrapped, kek(1).Wrapped) ||
		!recs[0].CreatedAt.Equal(kek(1).CreatedAt) || !recs[0].RetiredAt.IsZero() {
		t.Fatalf("after AddKEK(1): %+v", recs)
	}
	wantErr(t, "AddKEK(1) again", s.AddKEK(ctx, kek(1)), keys.ErrConflict)
	wantErr(t, "AddKEK(3) skipping 2", s.AddKEK(ctx, kek(3)), keys.ErrConflict)
	if got := states(t, s); got != "v1=active " {
		t.Fatalf("failed adds changed the KEKs: %s", got)
	}

	must(t, s.InsertDataKey(ctx, dek("a", 1)))
	must(t, s.InsertDataKey(ctx, dek("b", 1)))
	wantErr(t, "InsertDataKey under a missing KEK", s.InsertDataKey(ctx, dek("c", 2)), keys.ErrConflict)

	must(t, s.AddKEK(ctx, kek(2)))
	if got := states(t, s); got != "v1=retiring v2=active " {
		t.Fatalf("after AddKEK(2): %s", got)
	}
	wantErr(t, "AddKEK(3) during rotation", s.AddKEK(ctx, kek(3)), keys.ErrRotationInProgress)
	wantErr(t, "InsertDataKey under a retiring KEK", s.InsertDataKey(ctx, dek("c", 1)), keys.ErrConflict)
	if _, err := s.DataKey(ctx, "c"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("refused insert left a row: %v", err)
	}
	if got := counts(t, s); got != "map[1:2]" {
		t.Fatalf("DataKeyCounts = %s", got)
	}
	wantErr(t, "RetireKEK(1) while used", s.RetireKEK(ctx, 1, t0), keys.ErrConflict)
	wantErr(t, "RetireKEK(2) active", s.RetireKEK(ctx, 2, t0), keys.ErrConflict)

	stale, err := s.StaleDataKeys(ctx, 2, 10)
	must(t, err)
	if len(stale) != 2 {
		t.Fatalf("StaleDataKeys = %d rows, want 2", len(stale))
	}
	if one, err := s.StaleDataKeys(ctx, 2, 1); err != nil || len(one) != 1 {
		t.Fatalf("StaleDataKeys limit 1 = %d rows, %v", len(one), err)
	}
	if none, err := s.StaleDataKeys(ctx, 1, 10); err != nil || len(none) != 0 {
		t.Fatalf("StaleDataKeys below 1 = %d rows, %v", len(none), err)
	}

	// A key destroyed during the rotation stays destroyed.
	must(t, s.DestroyDataKey(ctx, "b", t0))
	rw := func(id string, from, to int) keys.Rewrap {
		return keys.Rewrap{ID: id, From: from, To: to, Wrapped: []byte("rewrapped-" + id)}
	}
	if _, err := s.RewrapDataKeys(ctx, []keys.Rewrap{rw("a", 1, 1)}); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("rewrap onto a retiring KEK: %v, want ErrConflict", err)
	}
	n, err := s.RewrapDataKeys(ctx, []keys.Rewrap{rw("a", 1, 2), rw("b", 1, 2), rw("missing", 1, 2)})
	must(t, err)
	if n != 1 {
		t.Fatalf("RewrapDataKeys changed %d rows, want 1", n)
	}
	a, err := s.DataKey(ctx, "a")
	must(t, err)
	if a.KEKVersion != 2 || string(a.Wrapped) != "rewrapped-a" {
		t.Fatalf("after rewrap: %+v", a)
	}
	if b, err := s.DataKey(ctx, "b"); err != nil || b.Wrapped != nil || b.KEKVersion != 1 {
		t.Fatalf("destroyed key after rewrap: %+v, %v", b, err)
	}
	if n, err := s.RewrapDataKeys(ctx, []keys.Rewrap{rw("a", 1, 2)}); err != nil || n != 0 {
		t.Fatalf("rewrap from a stale version changed %d rows, %v", n, err)
	}

	retiredAt := t0.Add(48 * time.Hour)
	must(t, s.RetireKEK(ctx, 1, retiredAt))
	recs, err = s.KEKs(ctx)
	must(t, err)
	if r := recs[0]; r.State != keys.KEKRetired || r.Wrapped != nil || !r.RetiredAt.Equal(retiredAt) {
		t.Fatalf("retired KEK: %+v", r)
	}
	wantErr(t, "RetireKEK(1) twice", s.RetireKEK(ctx, 1, t0), keys.ErrConflict)
	if got := counts(t, s); got != "map[2:1]" {
		t.Fatalf("DataKeyCounts = %s", got)
	}
	must(t, s.AddKEK(ctx, kek(3)))
	if got := states(t, s); got != "v1=retired v2=retiring v3=active " {
		t.Fatalf("after AddKEK(3): %s", got)
	}
}

func testDataKeys(t *testing.T, s keys.Store) {
	ctx := context.Background()
	must(t, s.AddKEK(ctx, kek(1)))
	if _, err := s.DataKey(ctx, "nope"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("unknown DataKey: %v", err)
	}
	wantErr(t, "destroy unknown", s.DestroyDataKey(ctx, "nope", t0), keys.ErrUnknownKey)
	d := dek("k1", 1)
	must(t, s.InsertDataKey(ctx, d))
	wantErr(t, "duplicate id", s.InsertDataKey(ctx, dek("k1", 1)), keys.ErrConflict)
	got, err := s.DataKey(ctx, "k1")
	must(t, err)
	if got.ID != d.ID || got.KEKVersion != 1 || !bytes.Equal(got.Wrapped, d.Wrapped) || !got.CreatedAt.Equal(d.CreatedAt) || !got.DestroyedAt.IsZero() {
		t.Fatalf("DataKey = %+v, want %+v", got, d)
	}
	if stale, err := s.StaleDataKeys(ctx, 1, 10); err != nil || len(stale) != 0 {
		t.Fatalf("keys on the active version are not stale: %v, %v", stale, err)
	}
	destroyedAt := t0.Add(time.Hour)
	must(t, s.DestroyDataKey(ctx, "k1", destroyedAt))
	must(t, s.DestroyDataKey(ctx, "k1", destroyedAt.Add(time.Hour))) // idempotent
	got, err = s.DataKey(ctx, "k1")
	must(t, err)
	if got.Wrapped != nil || !got.DestroyedAt.Equal(destroyedAt) {
		t.Fatalf("destroyed DataKey = %+v (want no material, destroyed at %v)", got, destroyedAt)
	}
	if got := counts(t, s); got != "map[]" {
		t.Fatalf("DataKeyCounts after destroy = %s", got)
	}
}

func sk(kid string) keys.SigningKeyRecord {
	return keys.SigningKeyRecord{Kid: kid, Public: []byte("pub-" + kid), Private: []byte("priv-" + kid), CreatedAt: t0}
}

func signingStates(t *testing.T, s keys.Store) string {
	t.Helper()
	recs, err := s.SigningKeys(context.Background())
	must(t, err)
	var b bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&b, "%s=%s ", r.Kid, r.State)
	}
	return b.String()
}

func testSigningKeys(t *testing.T, s keys.Store) {
	ctx := context.Background()
	if recs, err := s.SigningKeys(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: %v, %v", recs, err)
	}
	if _, err := s.SigningKey(ctx, "a"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("unknown SigningKey: %v", err)
	}
	must(t, s.InitSigningKeys(ctx, sk("a"), sk("b")))
	wantErr(t, "InitSigningKeys twice", s.InitSigningKeys(ctx, sk("c"), sk("d")), keys.ErrConflict)
	if got := signingStates(t, s); got != "a=current b=next " {
		t.Fatalf("after init: %s", got)
	}
	a, err := s.SigningKey(ctx, "a")
	must(t, err)
	if a.State != keys.SigningCurrent || string(a.Public) != "pub-a" || string(a.Private) != "priv-a" || !a.CreatedAt.Equal(t0) || !a.RetiredAt.IsZero() {
		t.Fatalf("SigningKey(a) = %+v", a)
	}

	c := sk("c")
	c.CreatedAt = t0.Add(time.Hour)
	retiredAt := t0.Add(2 * time.Hour)
	must(t, s.RotateSigningKeys(ctx, "a", "b", c, retiredAt))
	if got := signingStates(t, s); got != "a=retired b=current c=next " {
		t.Fatalf("after rotation: %s", got)
	}
	a, err = s.SigningKey(ctx, "a")
	must(t, err)
	if a.Private != nil || string(a.Public) != "pub-a" || !a.RetiredAt.Equal(retiredAt) {
		t.Fatalf("retired key: %+v (want public kept, private erased)", a)
	}
	wantErr(t, "stale rotation", s.RotateSigningKeys(ctx, "a", "b", sk("d"), t0), keys.ErrConflict)
	wantErr(t, "half-stale rotation", s.RotateSigningKeys(ctx, "b", "a", sk("d"), t0), keys.ErrConflict)
	wantErr(t, "duplicate kid", s.RotateSigningKeys(ctx, "b", "c", sk("a"), t0), keys.ErrConflict)
	if got := signingStates(t, s); got != "a=retired b=current c=next " {
		t.Fatalf("failed rotations changed the keys: %s", got)
	}
}

// race runs fn n times concurrently and returns the errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errs
}

func testConcurrentAddKEK(t *testing.T, s keys.Store) {
	ctx := context.Background()
	must(t, s.AddKEK(ctx, kek(1)))
	ok := 0
	for _, err := range race(8, func(int) error { return s.AddKEK(ctx, kek(2)) }) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, keys.ErrConflict), errors.Is(err, keys.ErrRotationInProgress):
		default:
			t.Errorf("concurrent AddKEK: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent AddKEK(2) succeeded, want 1", ok)
	}
	if got := states(t, s); got != "v1=retiring v2=active " {
		t.Errorf("after concurrent AddKEK: %s", got)
	}
}

func testConcurrentInitSigning(t *testing.T, s keys.Store) {
	ctx := context.Background()
	ok := 0
	for _, err := range race(8, func(i int) error {
		return s.InitSigningKeys(ctx, sk(fmt.Sprint("cur", i)), sk(fmt.Sprint("next", i)))
	}) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, keys.ErrConflict):
		default:
			t.Errorf("concurrent InitSigningKeys: %v", err)
		}
	}
	recs, err := s.SigningKeys(ctx)
	must(t, err)
	if ok != 1 || len(recs) != 2 {
		t.Errorf("%d concurrent inits succeeded leaving %d keys, want 1 and 2", ok, len(recs))
	}
}
