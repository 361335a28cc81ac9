package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency /ready probes: the database, the cache, a peer.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Informational checks are reported but never make the node unready:
	// another institution's outage must not take this node's own
	// services (a consent withdrawal, say) out of its load balancer.
	Informational bool
}

// CheckResult is one line of the /ready body.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	MS    int64  `json:"ms"`
	// Informational: a failure is reported in Degraded, not as not ready.
	Informational bool `json:"informational,omitempty"`
}

// ReadyBody is the /ready response.
type ReadyBody struct {
	Status string        `json:"status"` // "ready" or "not_ready"
	Checks []CheckResult `json:"checks"`
	// Degraded names the informational checks that failed (peers).
	Degraded []string     `json:"degraded,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
}

// Probe runs every check concurrently, each under timeout, and reports
// whether all passed.
func Probe(ctx context.Context, checks []Check, timeout time.Duration) ReadyBody {
	results := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := c.Fn(cctx)
			results[i] = CheckResult{Name: c.Name, OK: err == nil, MS: time.Since(start).Milliseconds(), Informational: c.Informational}
			if err != nil {
				results[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	body := ReadyBody{Status: "ready", Checks: results}
	var failed []string
	for _, r := range results {
		switch {
		case r.OK:
		case r.Informational:
			body.Degraded = append(body.Degraded, r.Name)
		default:
			failed = append(failed, r.Name)
		}
	}
	if len(failed) > 0 {
		body.Status = "not_ready"
		body.Error = &ErrorDetail{Code: "not_ready", Message: "not ready: " + strings.Join(failed, ", ") + " failed"}
	}
	return body
}

// Draining reports whether the node is shutting down; /ready answers 503
// while it is, so load balancers stop sending before the listener closes.
type Draining interface{ Draining() bool }

// Mount adds /health, /ready and /metrics to mux.
func Mount(mux *http.ServeMux, gatherer prometheus.Gatherer, checks []Check, timeout time.Duration, drain Draining) {
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		body := Probe(r.Context(), checks, timeout)
		if drain != nil && drain.Draining() {
			body.Status = "not_ready"
			body.Error = &ErrorDetail{Code: "draining", Message: "shutting down"}
		}
		status := http.StatusOK
		if body.Error != nil {
			status = http.StatusServiceUnavailable
			body.Error.RequestID = RequestID(r.Context())
		}
		WriteJSON(w, status, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// PeerCheck probes a peer's /health with client; the check is
// informational (see Check).
func PeerCheck(client *http.Client, name, baseURL string) Check {
	url := strings.TrimRight(baseURL, "/") + "/health"
	return Check{Name: "peer:" + name, Informational: true, Fn: func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health answered %d", resp.StatusCode)
		}
		return nil
	}}
}
