// Package health runs a deployment's health checks — the operations
// runbook's health_check.sh — and reports them.
//
// Each check is a named probe of one component (a service's /health or
// /ready, PostgreSQL, Redis, Prometheus, Alertmanager, Grafana, the console,
// a peer), run concurrently under a deadline, printed as a ✅/❌ line per item
// with the list of failures, or as JSON for scripts.
//
// The package knows nothing of HTTP, databases or the configuration: probes
// are functions, built by the adapter package healthprobe from a node's
// configuration or from explicit targets, so `fedrisk health` and the
// troubleshooting report share both the checks and the report.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ErrUnhealthy is returned by [Report.Err] when at least one check failed.
var ErrUnhealthy = errors.New("unhealthy")

// ErrNothingToCheck means a run was asked for with no checks at all, which
// must never pass as healthy.
var ErrNothingToCheck = errors.New("nothing to check")

// Check is one item of a health run.
type Check struct {
	// Name identifies the item for people and scripts, e.g.
	// "psi-service /ready" or "postgresql".
	Name string
	// Component groups items: the runbook's name of the component, e.g.
	// "psi-service", "postgresql", "prometheus"; selections (--only) use it.
	Component string
	// Target is where the probe goes, printable: no password or token.
	Target string
	// Probe returns a short detail on success ("200", "PONG") or the
	// reason of the failure. It must honour ctx's deadline.
	Probe func(ctx context.Context) (detail string, err error)
}

// Result is the outcome of one check.
type Result struct {
	Name      string `json:"name"`
	Component string `json:"component"`
	Target    string `json:"target"`
	OK        bool   `json:"ok"`
	Detail    string `json:"detail,omitempty"`
	Error     string `json:"error,omitempty"`
	Millis    int64  `json:"ms"`
}

// Report is the outcome of a run, in the order the checks were given.
type Report struct {
	Healthy  bool      `json:"healthy"`
	Checked  int       `json:"checked"`
	Failures []string  `json:"failures"`
	Results  []Result  `json:"checks"`
	At       time.Time `json:"at"`
}

// Run probes every check concurrently, each under timeout, and reports.
// With no checks the report is unhealthy: an empty selection must not pass.
func Run(ctx context.Context, checks []Check, timeout time.Duration) Report {
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			detail, err := c.Probe(cctx)
			r := Result{Name: c.Name, Component: c.Component, Target: c.Target, OK: err == nil, Detail: detail,
				Millis: time.Since(start).Milliseconds()}
			if err != nil {
				r.Error = oneLine(err.Error())
			}
			results[i] = r
		}()
	}
	wg.Wait()
	rep := Report{Healthy: len(checks) > 0, Checked: len(checks), Failures: []string{}, Results: results, At: time.Now().UTC()}
	for _, r := range results {
		if !r.OK {
			rep.Healthy = false
			rep.Failures = append(rep.Failures, r.Name)
		}
	}
	return rep
}

// Err is nil when every check passed, else an error wrapping ErrUnhealthy
// (or ErrNothingToCheck) that names the failed items.
func (r Report) Err() error {
	if r.Checked == 0 {
		return ErrNothingToCheck
	}
	if r.Healthy {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnhealthy, strings.Join(r.Failures, ", "))
}

// WriteText prints one ✅/❌ line per check and then the list of failures,
// as the runbook's health_check.sh does.
func (r Report) WriteText(w io.Writer) error {
	width := 0
	for _, res := range r.Results {
		width = max(width, len(res.Name))
	}
	var b strings.Builder
	for _, res := range r.Results {
		mark, what := "✅", res.Detail
		if !res.OK {
			mark, what = "❌", res.Error
		}
		fmt.Fprintf(&b, "%s %-*s  %s  %s (%d ms)\n", mark, width, res.Name, res.Target, what, res.Millis)
	}
	switch {
	case r.Checked == 0:
		b.WriteString("\nnothing to check: no target is configured or selected\n")
	case r.Healthy:
		fmt.Fprintf(&b, "\nall %d checks healthy\n", r.Checked)
	default:
		fmt.Fprintf(&b, "\n%d of %d checks failed:\n", len(r.Failures), r.Checked)
		for _, res := range r.Results {
			if !res.OK {
				fmt.Fprintf(&b, "  - %s: %s\n", res.Name, res.Error)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the report as one JSON document.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Select keeps the checks whose Component (or Name) is in names; an empty
// names keeps all. Unknown names are returned so the caller can refuse them.
func Select(checks []Check, names []string) (kept []Check, unknown []string) {
	if len(names) == 0 {
		return checks, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = false
	}
	for _, c := range checks {
		if _, ok := want[c.Component]; ok {
			want[c.Component] = true
			kept = append(kept, c)
			continue
		}
		if _, ok := want[c.Name]; ok {
			want[c.Name] = true
			kept = append(kept, c)
		}
	}
	for _, n := range names {
		if !want[n] {
			unknown = append(unknown, n)
		}
	}
	return kept, unknown
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
