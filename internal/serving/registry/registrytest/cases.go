package registrytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
)

var cases = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"NextVersion", testNextVersion},
	{"NextVersionConcurrent", testNextVersionConcurrent},
	{"RegisterResolve", testRegisterResolve},
	{"BothHalves", testBothHalves},
	{"Idempotent", testIdempotent},
	{"Conflict", testConflict},
	{"RegisteredVersionBumpsNext", testRegisteredBumpsNext},
	{"InvalidChangesNothing", testInvalid},
	{"PromoteResolve", testPromote},
	{"RollbackStack", testRollbackStack},
	{"LabelErrors", testLabelErrors},
	{"PromoteConcurrent", testPromoteConcurrent},
	{"PromoteSeenByReplica", testReplica},
	{"ListModels", testList},
	{"Caches", testCaches},
	{"CorruptCacheEntry", testCorruptCache},
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

func register(t *testing.T, e *env, role, id, v string, x float64) []byte {
	t.Helper()
	half := GuestHalf(t, id, v, x)
	if role == registry.RoleHost {
		half = HostHalf(t, id, v, x)
	}
	must(t, e.reg.Register(e.ctx, role, id, v, half, []byte(`{"auc":0.73}`)))
	return half
}

func testNextVersion(t *testing.T, e *env) {
	id := NewModelID(t)
	for want := 1; want <= 3; want++ {
		v, err := e.reg.NextVersion(e.ctx, id)
		must(t, err)
		if v != strconv.Itoa(want) {
			t.Errorf("NextVersion = %q, want %d", v, want)
		}
	}
	other, err := e.reg.NextVersion(e.ctx, NewModelID(t))
	must(t, err)
	if other != "1" {
		t.Errorf("another model starts at %q", other)
	}
	for _, bad := range []string{"", "-x", "a/b", "a b", strings.Repeat("a", registry.MaxModelIDLen+1)} {
		_, err := e.reg.NextVersion(e.ctx, bad)
		wantErr(t, fmt.Sprintf("NextVersion(%q)", bad), err, registry.ErrInvalid)
	}
}

func testNextVersionConcurrent(t *testing.T, e *env) {
	id := NewModelID(t)
	const n = 40
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = e.reg.NextVersion(e.ctx, id) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		must(t, errs[i])
		if seen[got[i]] {
			t.Errorf("version %s handed out twice", got[i])
		}
		seen[got[i]] = true
	}
	for v := 1; v <= n; v++ {
		if !seen[strconv.Itoa(v)] {
			t.Errorf("version %d never handed out (got %v)", v, got)
		}
	}
}

func testRegisterResolve(t *testing.T, e *env) {
	id := NewModelID(t)
	v, err := e.reg.NextVersion(e.ctx, id)
	must(t, err)
	half := register(t, e, registry.RoleGuest, id, v, 0.125)

	_, err = e.reg.Resolve(e.ctx, id, "")
	wantErr(t, "Resolve stable before any promotion", err, registry.ErrNotFound)
	_, err = e.reg.Resolve(e.ctx, id, "2")
	wantErr(t, "Resolve unknown version", err, registry.ErrNotFound)
	_, err = e.reg.Resolve(e.ctx, NewModelID(t), "1")
	wantErr(t, "Resolve unknown model", err, registry.ErrNotFound)
	_, err = e.reg.Resolve(e.ctx, id, "latest")
	wantErr(t, "Resolve bad ref", err, registry.ErrInvalid)

	got, err := e.reg.Resolve(e.ctx, id, v)
	must(t, err)
	sum := sha256.Sum256(half)
	if got.ModelID != id || got.Version != v || got.Role != registry.RoleGuest || got.Digest != hex.EncodeToString(sum[:]) ||
		!bytes.Equal(got.Half, half) || string(got.Card) != `{"auc":0.73}` || !got.Created.Equal(T0) ||
		got.RegisteredBy != "training" || len(got.Labels) != 0 {
		t.Errorf("Resolve = %+v", got)
	}
	m, ge, err := e.reg.GuestModel(e.ctx, id, v)
	must(t, err)
	if m.Bias != 0.125 || m.ModelID != id || ge.Digest != got.Digest {
		t.Errorf("GuestModel = %+v, %+v", m, ge)
	}
	_, _, err = e.reg.HostModel(e.ctx, id, v)
	wantErr(t, "HostModel of a guest-only version", err, registry.ErrNotFound)
}

func testBothHalves(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleHost, id, "1", 0.75)
	h, he, err := e.reg.HostModel(e.ctx, id, "1")
	must(t, err)
	if h.Weights[0] != 0.75 || he.Role != registry.RoleHost {
		t.Errorf("HostModel = %+v %+v", h, he)
	}
	_, _, err = e.reg.GuestModel(e.ctx, id, "1")
	wantErr(t, "GuestModel of a host-only version", err, registry.ErrNotFound)
	any, err := e.reg.Resolve(e.ctx, id, "1")
	must(t, err)
	if any.Role != registry.RoleHost {
		t.Errorf("Resolve of a host-only version: role %s", any.Role)
	}
	register(t, e, registry.RoleGuest, id, "1", 0.5)
	any, err = e.reg.Resolve(e.ctx, id, "1")
	must(t, err)
	if any.Role != registry.RoleGuest {
		t.Errorf("Resolve with both halves: role %s, want guest", any.Role)
	}
	h2, _, err := e.reg.HostModel(e.ctx, id, "1")
	must(t, err)
	if h2.Weights[0] != 0.75 {
		t.Errorf("host half changed: %+v", h2)
	}
}

func testIdempotent(t *testing.T, e *env) {
	id := NewModelID(t)
	half := register(t, e, registry.RoleGuest, id, "1", 0.5)
	e.clock.Advance(time.Hour)
	must(t, e.reg.Register(e.ctx, registry.RoleGuest, id, "1", half, nil))
	vs, _, err := e.reg.List(e.ctx, id)
	must(t, err)
	if len(vs) != 1 || !vs[0].Created.Equal(T0) || string(vs[0].Card) != `{"auc":0.73}` {
		t.Errorf("after a repeated registration: %+v", vs)
	}
	// Concurrent repeats are all no-ops too.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = e.reg.Register(e.ctx, registry.RoleGuest, id, "1", half, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
}

func testConflict(t *testing.T, e *env) {
	id := NewModelID(t)
	half := register(t, e, registry.RoleGuest, id, "1", 0.5)
	err := e.reg.Register(e.ctx, registry.RoleGuest, id, "1", GuestHalf(t, id, "1", 0.6), nil)
	wantErr(t, "another half under the same version", err, registry.ErrConflict)
	got, err := e.reg.Resolve(e.ctx, id, "1")
	must(t, err)
	if !bytes.Equal(got.Half, half) {
		t.Error("a conflicting registration replaced the half")
	}
}

func testRegisteredBumpsNext(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleHost, id, "5", 1)
	v, err := e.reg.NextVersion(e.ctx, id)
	must(t, err)
	if v != "6" {
		t.Errorf("NextVersion after registering 5 = %s", v)
	}
	register(t, e, registry.RoleHost, id, "2", 1)
	if v, _ = e.reg.NextVersion(e.ctx, id); v != "7" {
		t.Errorf("NextVersion after registering 2 = %s, want 7", v)
	}
}

func testInvalid(t *testing.T, e *env) {
	id := NewModelID(t)
	good := GuestHalf(t, id, "1", 0)
	bad := []struct {
		name              string
		role, id, version string
		half, card        []byte
	}{
		{"role", "observer", id, "1", good, nil},
		{"empty role", "", id, "1", good, nil},
		{"model id", "guest", "../x", "1", good, nil},
		{"version zero", "guest", id, "0", good, nil},
		{"version leading zero", "guest", id, "01", good, nil},
		{"version text", "guest", id, "v1", good, nil},
		{"version negative", "guest", id, "-1", good, nil},
		{"version huge", "guest", id, "99999999999999999999", good, nil},
		{"empty half", "guest", id, "1", nil, nil},
		{"garbage half", "guest", id, "1", []byte("{not json"), nil},
		{"host half as guest", "guest", id, "1", HostHalf(t, id, "1", 1), nil},
		{"guest half as host", "host", id, "1", good, nil},
		{"half of another model", "guest", id, "1", GuestHalf(t, "other", "1", 0), nil},
		{"half of another version", "guest", id, "1", GuestHalf(t, id, "2", 0), nil},
		{"card not JSON", "guest", id, "1", good, []byte("{")},
		{"card too large", "guest", id, "1", good, []byte(`"` + strings.Repeat("a", registry.MaxCardBytes) + `"`)},
	}
	for _, b := range bad {
		err := e.reg.Register(e.ctx, b.role, b.id, b.version, b.half, b.card)
		wantErr(t, b.name, err, registry.ErrInvalid)
	}
	_, _, err := e.reg.List(e.ctx, id)
	wantErr(t, "List after refused registrations", err, registry.ErrNotFound)
	if v, _ := e.reg.NextVersion(e.ctx, id); v != "1" {
		t.Errorf("refused registrations moved the version counter: next %s", v)
	}
}

func history(t *testing.T, e *env, id string) string {
	t.Helper()
	m, err := e.reg.Model(e.ctx, id)
	must(t, err)
	var parts []string
	for _, h := range m.History {
		parts = append(parts, fmt.Sprintf("%s %s %s->%s by %s", h.Label, h.Action, h.Previous, h.Version, h.Actor))
	}
	return strings.Join(parts, "; ")
}

func resolved(t *testing.T, e *env, reg *registry.Registry, id, ref string) string {
	t.Helper()
	got, err := reg.Resolve(e.ctx, id, ref)
	if err != nil {
		return "error: " + err.Error()
	}
	return got.Version
}

func testPromote(t *testing.T, e *env) {
	id := NewModelID(t)
	for _, v := range []string{"1", "2", "3"} {
		register(t, e, registry.RoleGuest, id, v, 0)
	}
	c, err := e.reg.Promote(e.ctx, id, "1", registry.LabelStable, "token:alice")
	must(t, err)
	if !c.Changed() || c.Previous != "" || c.Version != "1" || c.Action != registry.ActionPromote || !c.At.Equal(T0) {
		t.Errorf("first promotion %+v", c)
	}
	if got := resolved(t, e, e.reg, id, ""); got != "1" {
		t.Errorf(`Resolve "" = %s`, got)
	}
	g, ge, err := e.reg.GuestModel(e.ctx, id, registry.LabelStable)
	must(t, err)
	if g.Version != "1" || !slices.Equal(ge.Labels, []string{"stable"}) {
		t.Errorf("GuestModel stable: %s %v", g.Version, ge.Labels)
	}
	_, err = e.reg.Promote(e.ctx, id, "2", registry.LabelStable, "token:alice")
	must(t, err)
	if got := resolved(t, e, e.reg, id, "stable"); got != "2" {
		t.Errorf("stable after promoting 2 = %s", got)
	}
	c, err = e.reg.Promote(e.ctx, id, "2", registry.LabelStable, "token:bob")
	must(t, err)
	if c.Changed() {
		t.Errorf("promoting the current version changed something: %+v", c)
	}
	_, err = e.reg.Promote(e.ctx, id, "3", registry.LabelCanary, "")
	must(t, err)
	if got := resolved(t, e, e.reg, id, "canary"); got != "3" {
		t.Errorf("canary = %s", got)
	}
	if got := resolved(t, e, e.reg, id, "1"); got != "1" {
		t.Errorf("version 1 after promotions: %s", got)
	}
	want := "stable promote ->1 by token:alice; stable promote 1->2 by token:alice; canary promote ->3 by system"
	if got := history(t, e, id); got != want {
		t.Errorf("history\n got %s\nwant %s", got, want)
	}
	vs, labels, err := e.reg.List(e.ctx, id)
	must(t, err)
	if labels["stable"] != "2" || labels["canary"] != "3" || len(labels) != 2 {
		t.Errorf("labels %v", labels)
	}
	for _, v := range vs {
		want := map[string][]string{"1": nil, "2": {"stable"}, "3": {"canary"}}[v.Version]
		if !slices.Equal(v.Labels, want) || v.Half != nil {
			t.Errorf("version %s: labels %v, half %d bytes", v.Version, v.Labels, len(v.Half))
		}
	}
}

func testRollbackStack(t *testing.T, e *env) {
	id := NewModelID(t)
	for _, v := range []string{"1", "2", "3", "4"} {
		register(t, e, registry.RoleGuest, id, v, 0)
	}
	for _, v := range []string{"1", "2", "3"} {
		_, err := e.reg.Promote(e.ctx, id, v, registry.LabelStable, "ops")
		must(t, err)
	}
	c, err := e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops")
	must(t, err)
	if c.Version != "2" || c.Previous != "3" || c.Action != registry.ActionRollback {
		t.Errorf("rollback %+v", c)
	}
	if got := resolved(t, e, e.reg, id, ""); got != "2" {
		t.Errorf("stable after a rollback = %s", got)
	}
	// A promotion after a rollback is undone by the next rollback.
	_, err = e.reg.Promote(e.ctx, id, "4", registry.LabelStable, "ops")
	must(t, err)
	c, err = e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops")
	must(t, err)
	if c.Version != "2" {
		t.Errorf("rollback of 4 went to %s, want 2", c.Version)
	}
	c, err = e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops")
	must(t, err)
	if c.Version != "1" {
		t.Errorf("second rollback went to %s, want 1", c.Version)
	}
	_, err = e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops")
	wantErr(t, "rollback past the first promotion", err, registry.ErrNoRollback)
	wantErr(t, "ErrNoRollback is a conflict", err, registry.ErrConflict)
	if got := resolved(t, e, e.reg, id, ""); got != "1" {
		t.Errorf("a refused rollback moved stable to %s", got)
	}
	_, err = e.reg.Rollback(e.ctx, id, registry.LabelCanary, "ops")
	wantErr(t, "rollback of a label never set", err, registry.ErrNoRollback)
	for _, v := range []string{"1", "2", "3", "4"} {
		if got := resolved(t, e, e.reg, id, v); got != v {
			t.Errorf("version %s after rollbacks: %s", v, got)
		}
	}
	want := "stable promote ->1 by ops; stable promote 1->2 by ops; stable promote 2->3 by ops; stable rollback 3->2 by ops; " +
		"stable promote 2->4 by ops; stable rollback 4->2 by ops; stable rollback 2->1 by ops"
	if got := history(t, e, id); got != want {
		t.Errorf("history\n got %s\nwant %s", got, want)
	}
}

func testLabelErrors(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleGuest, id, "1", 0)
	_, err := e.reg.Promote(e.ctx, id, "2", registry.LabelStable, "ops")
	wantErr(t, "promote an unknown version", err, registry.ErrNotFound)
	_, err = e.reg.Promote(e.ctx, NewModelID(t), "1", registry.LabelStable, "ops")
	wantErr(t, "promote an unknown model", err, registry.ErrNotFound)
	_, err = e.reg.Rollback(e.ctx, NewModelID(t), registry.LabelStable, "ops")
	wantErr(t, "roll back an unknown model", err, registry.ErrNotFound)
	_, err = e.reg.Promote(e.ctx, id, "1", "prod", "ops")
	wantErr(t, "promote to a bad label", err, registry.ErrInvalid)
	_, err = e.reg.Promote(e.ctx, id, "stable", registry.LabelStable, "ops")
	wantErr(t, "promote a label", err, registry.ErrInvalid)
	_, err = e.reg.Rollback(e.ctx, id, "", "ops")
	wantErr(t, "roll back no label", err, registry.ErrInvalid)
	if h := history(t, e, id); h != "" {
		t.Errorf("refused label changes recorded: %s", h)
	}
	// A model id that NextVersion created but nothing registered: no
	// version to promote.
	empty := NewModelID(t)
	_, err = e.reg.NextVersion(e.ctx, empty)
	must(t, err)
	_, err = e.reg.Promote(e.ctx, empty, "1", registry.LabelStable, "ops")
	wantErr(t, "promote an unregistered version", err, registry.ErrNotFound)
}

func testPromoteConcurrent(t *testing.T, e *env) {
	id := NewModelID(t)
	const n = 12
	for v := 1; v <= n; v++ {
		register(t, e, registry.RoleGuest, id, strconv.Itoa(v), 0)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = e.reg.Promote(e.ctx, id, strconv.Itoa(i+1), registry.LabelStable, "ops")
		})
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	m, err := e.reg.Model(e.ctx, id)
	must(t, err)
	if len(m.History) != n {
		t.Fatalf("%d history entries, want %d", len(m.History), n)
	}
	prev := ""
	for i, h := range m.History {
		if h.Previous != prev {
			t.Errorf("history[%d] previous %q, want %q (lost update)", i, h.Previous, prev)
		}
		prev = h.Version
	}
	if m.Labels["stable"] != prev {
		t.Errorf("stable = %s, last change says %s", m.Labels["stable"], prev)
	}
	// Concurrent rollbacks walk back one step each.
	for i := range 3 {
		wg.Go(func() { _, errs[i] = e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops") })
	}
	wg.Wait()
	for _, err := range errs[:3] {
		must(t, err)
	}
	m, err = e.reg.Model(e.ctx, id)
	must(t, err)
	if want := m.History[n-4].Version; m.Labels["stable"] != want {
		t.Errorf("after 3 rollbacks stable = %s, want %s", m.Labels["stable"], want)
	}
}

func testReplica(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleGuest, id, "1", 0)
	register(t, e, registry.RoleGuest, id, "2", 0)
	_, err := e.reg.Promote(e.ctx, id, "1", registry.LabelStable, "ops")
	must(t, err)
	other := e.replica()
	if got := resolved(t, e, other, id, ""); got != "1" {
		t.Fatalf("replica stable = %s", got)
	}
	_, err = e.reg.Promote(e.ctx, id, "2", registry.LabelStable, "ops")
	must(t, err)
	if got := resolved(t, e, other, id, ""); got != "2" {
		t.Errorf("replica still sees stable = %s after a promotion", got)
	}
	_, err = e.reg.Rollback(e.ctx, id, registry.LabelStable, "ops")
	must(t, err)
	if got := resolved(t, e, other, id, ""); got != "1" {
		t.Errorf("replica sees stable = %s after a rollback", got)
	}
}

func testList(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleHost, id, "10", 0)
	register(t, e, registry.RoleGuest, id, "2", 0)
	register(t, e, registry.RoleHost, id, "2", 0)
	e.clock.Advance(time.Second)
	register(t, e, registry.RoleGuest, id, "9", 0)
	vs, labels, err := e.reg.List(e.ctx, id)
	must(t, err)
	var got []string
	for _, v := range vs {
		got = append(got, v.Version+"/"+v.Role)
		if v.Half != nil || v.Digest == "" || v.RegisteredBy != "training" {
			t.Errorf("listed %+v", v)
		}
	}
	if want := []string{"2/guest", "2/host", "9/guest", "10/host"}; !slices.Equal(got, want) {
		t.Errorf("List order %v, want %v", got, want)
	}
	if len(labels) != 0 {
		t.Errorf("labels %v", labels)
	}
	if !vs[2].Created.Equal(T0.Add(time.Second)) {
		t.Errorf("created %v", vs[2].Created)
	}
	models, err := e.reg.Models(e.ctx)
	must(t, err)
	found := false
	for _, m := range models {
		if m.ID == id {
			found = len(m.Versions) == 4
		}
		if len(m.Versions) == 0 {
			t.Errorf("model %s listed without versions", m.ID)
		}
	}
	if !found {
		t.Errorf("Models does not list %s with its 4 halves", id)
	}
	// A model id with no registered version is not listed.
	empty := NewModelID(t)
	_, err = e.reg.NextVersion(e.ctx, empty)
	must(t, err)
	models, err = e.reg.Models(e.ctx)
	must(t, err)
	for _, m := range models {
		if m.ID == empty {
			t.Errorf("Models lists %s, which has no version", empty)
		}
	}
	_, _, err = e.reg.List(e.ctx, empty)
	wantErr(t, "List of a model without versions", err, registry.ErrNotFound)
}

// countingStore counts the reads of whole halves from the store.
type countingStore struct {
	registry.Store
	halves atomic.Int64
}

func (s *countingStore) Entry(ctx context.Context, id, v, role string, withHalf bool) (registry.Entry, error) {
	if withHalf {
		s.halves.Add(1)
	}
	return s.Store.Entry(ctx, id, v, role, withHalf)
}

func testCaches(t *testing.T, e *env) {
	id := NewModelID(t)
	register(t, e, registry.RoleGuest, id, "1", 0.5)
	register(t, e, registry.RoleHost, id, "1", 0.5)
	cs := &countingStore{Store: e.store}
	a := registry.New(cs, e.cache, registry.Options{})
	g1, _, err := a.GuestModel(e.ctx, id, "1")
	must(t, err)
	g2, _, err := a.GuestModel(e.ctx, id, "1")
	must(t, err)
	if g1 != g2 {
		t.Error("the parsed guest half is not shared between calls")
	}
	h1, _, err := a.HostModel(e.ctx, id, "1")
	must(t, err)
	h2, _, err := a.HostModel(e.ctx, id, "1")
	must(t, err)
	if h1 != h2 {
		t.Error("the parsed host half is not shared between calls")
	}
	if n := cs.halves.Load(); n != 2 {
		t.Errorf("%d reads of whole halves from the store, want 2", n)
	}
	// Another process finds the halves in the node cache.
	b := registry.New(cs, e.cache, registry.Options{})
	if _, _, err := b.GuestModel(e.ctx, id, "1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.HostModel(e.ctx, id, "1"); err != nil {
		t.Fatal(err)
	}
	if n := cs.halves.Load(); n != 2 {
		t.Errorf("a second replica read %d halves from the store, want them from the node cache", n-2)
	}
	// Without a node cache everything still works.
	c := registry.New(cs, nil, registry.Options{MaxLoaded: 1})
	for range 2 {
		if _, _, err := c.GuestModel(e.ctx, id, "1"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.HostModel(e.ctx, id, "1"); err != nil {
			t.Fatal(err)
		}
	}
}

func testCorruptCache(t *testing.T, e *env) {
	id := NewModelID(t)
	half := register(t, e, registry.RoleGuest, id, "1", 0.5)
	got, err := e.reg.Resolve(e.ctx, id, "1")
	must(t, err)
	key := id + "/1/guest/" + got.Digest
	forged := GuestHalf(t, id, "1", 9)
	must(t, e.cache.Set(e.ctx, cache.ModelCache(), key, forged, 0))
	fresh := registry.New(e.store, e.cache, registry.Options{})
	m, ge, err := fresh.GuestModel(e.ctx, id, "1")
	must(t, err)
	if m.Bias != 0.5 || !bytes.Equal(ge.Half, half) {
		t.Errorf("a cache entry that does not match its digest was used: bias %v", m.Bias)
	}
}
