package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registrytest"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestRollbackTarget(t *testing.T) {
	p := func(prev, v string) registry.LabelChange {
		return registry.LabelChange{Action: registry.ActionPromote, Previous: prev, Version: v}
	}
	r := func(prev, v string) registry.LabelChange {
		return registry.LabelChange{Action: registry.ActionRollback, Previous: prev, Version: v}
	}
	for _, c := range []struct {
		name    string
		history []registry.LabelChange
		want    string
		ok      bool
	}{
		{"empty", nil, "", false},
		{"first promotion", []registry.LabelChange{p("", "1")}, "", false},
		{"second promotion", []registry.LabelChange{p("", "1"), p("1", "2")}, "1", true},
		{"after one rollback", []registry.LabelChange{p("", "1"), p("1", "2"), p("2", "3"), r("3", "2")}, "1", true},
		{"all undone", []registry.LabelChange{p("", "1"), p("1", "2"), r("2", "1")}, "", false},
		{"promotion after rollback", []registry.LabelChange{p("", "1"), p("1", "2"), r("2", "1"), p("1", "3")}, "1", true},
		{"promote, rollback, promote, rollback", []registry.LabelChange{p("", "1"), p("1", "2"), p("2", "3"), r("3", "2"), p("2", "4"), r("4", "2")}, "1", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := registry.RollbackTarget(c.history)
			if got != c.want || ok != c.ok {
				t.Errorf("RollbackTarget = %q, %v; want %q, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	for v, want := range map[string]int64{"1": 1, "42": 42, "999999999999999999": 999999999999999999} {
		if n, err := registry.ParseVersion(v); err != nil || n != want {
			t.Errorf("ParseVersion(%q) = %d, %v", v, n, err)
		}
	}
	for _, v := range []string{"", "0", "01", "+1", "-1", "1.0", " 1", "1e3", "stable", "1000000000000000000"} {
		if _, err := registry.ParseVersion(v); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("ParseVersion(%q) accepted", v)
		}
	}
	for _, id := range []string{"credit-risk", "lr-0a1b", "M.v2_x", "9"} {
		if err := registry.ValidModelID(id); err != nil {
			t.Errorf("ValidModelID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", ".a", "a/b", "a b", "a%2f", "é", "a\x00"} {
		if err := registry.ValidModelID(id); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("ValidModelID(%q) accepted", id)
		}
	}
}

func TestForScoring(t *testing.T) {
	ctx := context.Background()
	reg := registry.New(sqlregistry.New(sqldbtest.OpenSQLite(t, true)), nil, registry.Options{})
	if err := reg.Register(ctx, registry.RoleGuest, "m", "1", registrytest.GuestHalf(t, "m", "1", 0.5), nil); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, registry.RoleHost, "m", "1", registrytest.HostHalf(t, "m", "1", 2), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Promote(ctx, "m", "1", registry.LabelStable, "test"); err != nil {
		t.Fatal(err)
	}
	errMissing := errors.New("model not found")
	s := reg.ForScoring(errMissing)
	g, v, err := s.GuestModel(ctx, "m", "")
	if err != nil || v != "1" || g.Bias != 0.5 {
		t.Errorf("GuestModel = %v, %q, %v", g, v, err)
	}
	h, err := s.HostModel(ctx, "m", "1")
	if err != nil || h.Weights[0] != 2 {
		t.Errorf("HostModel = %v, %v", h, err)
	}
	for _, ref := range []string{"canary", "2", "latest"} {
		if _, _, err := s.GuestModel(ctx, "m", ref); !errors.Is(err, errMissing) {
			t.Errorf("GuestModel(%q): %v, want the scoring sentinel", ref, err)
		}
	}
	if _, err := s.HostModel(ctx, "other", "1"); !errors.Is(err, errMissing) || !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("HostModel of an unknown model: %v", err)
	}
}
