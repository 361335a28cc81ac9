package health

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func check(name, component string, err error) Check {
	return Check{Name: name, Component: component, Target: "t", Probe: func(ctx context.Context) (string, error) { return "ok", err }}
}

func TestRunOrderFailuresAndErr(t *testing.T) {
	checks := []Check{check("a /health", "a", nil), check("b", "b", errors.New("down\nhard")), check("c", "c", nil)}
	rep := Run(context.Background(), checks, time.Second)
	if rep.Healthy || rep.Checked != 3 || !slices.Equal(rep.Failures, []string{"b"}) {
		t.Fatalf("report %+v", rep)
	}
	if rep.Results[1].Error != "down hard" || rep.Results[0].Name != "a /health" {
		t.Errorf("results %+v", rep.Results)
	}
	if err := rep.Err(); !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "b") {
		t.Errorf("Err() = %v", err)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "❌ b") || !strings.Contains(b.String(), "1 of 3 checks failed") {
		t.Errorf("text:\n%s", b.String())
	}
}

func TestRunNothingIsNotHealthy(t *testing.T) {
	rep := Run(context.Background(), nil, time.Second)
	if rep.Healthy || !errors.Is(rep.Err(), ErrNothingToCheck) {
		t.Errorf("empty run: %+v %v", rep, rep.Err())
	}
}

func TestRunDeadline(t *testing.T) {
	slow := Check{Name: "slow", Probe: func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() }}
	if rep := Run(context.Background(), []Check{slow}, 10*time.Millisecond); rep.Healthy {
		t.Errorf("a probe past its deadline passed: %+v", rep)
	}
}

func TestSelect(t *testing.T) {
	checks := []Check{check("psi-service /health", "psi-service", nil), check("psi-service /ready", "psi-service", nil), check("redis", "redis", nil)}
	kept, unknown := Select(checks, []string{"psi-service", "ops"})
	if len(kept) != 2 || !slices.Equal(unknown, []string{"ops"}) {
		t.Errorf("kept %d, unknown %v", len(kept), unknown)
	}
	if kept, _ := Select(checks, []string{"redis"}); len(kept) != 1 || kept[0].Name != "redis" {
		t.Errorf("by component: %+v", kept)
	}
	if kept, _ := Select(checks, nil); len(kept) != 3 {
		t.Errorf("no selection keeps all: %d", len(kept))
	}
}
