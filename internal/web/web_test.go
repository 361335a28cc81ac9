package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type payload struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func newTestServer(t *testing.T, checks []Check) (*httptest.Server, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	Mount(mux, reg, checks, time.Second, nil)
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
	})
	mux.HandleFunc("POST /things", func(w http.ResponseWriter, r *http.Request) {
		var p payload
		if err := DecodeJSON(r, &p); err != nil {
			WriteError(w, r, log, err)
			return
		}
		WriteJSON(w, http.StatusCreated, p)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, log, errors.New("db password=hunter2 exploded"))
	})
	h := Middleware{Service: "consent", Log: log, Metrics: NewMetrics(reg), MaxBodyBytes: 64}.Wrap(mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, reg, &logs
}

func do(t *testing.T, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not a JSON error body: %s", b)
	}
	return e.Error.Code
}

func TestErrorsAreJSON(t *testing.T) {
	srv, _, logs := newTestServer(t, nil)
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"not found", "GET", "/nope", "", nil, 404, "not_found"},
		{"method not allowed", "DELETE", "/things/1", "", nil, 405, "method_not_allowed"},
		{"panic", "GET", "/boom", "", nil, 500, "internal"},
		{"internal", "GET", "/fail", "", nil, 500, "internal"},
		{"malformed", "POST", "/things", `{"name":`, nil, 400, "invalid_json"},
		{"syntax", "POST", "/things", `{"name" 1}`, nil, 400, "invalid_json"},
		{"unknown field", "POST", "/things", `{"nam":"x"}`, nil, 400, "unknown_field"},
		{"wrong type", "POST", "/things", `{"count":"x"}`, nil, 400, "invalid_field"},
		{"trailing", "POST", "/things", `{"name":"a"}{"name":"b"}`, nil, 400, "invalid_json"},
		{"empty", "POST", "/things", ``, nil, 400, "invalid_json"},
		{"too large", "POST", "/things", `{"name":"` + strings.Repeat("x", 100) + `"}`, nil, 413, "body_too_large"},
		{"content type", "POST", "/things", `{"name":"a"}`, []string{"Content-Type", "text/xml"}, 415, "unsupported_media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, tt.method, srv.URL+tt.path, tt.body, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tt.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if got := errorCode(t, b); got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
			if strings.Contains(string(b), "hunter2") {
				t.Errorf("cause leaked to client: %s", b)
			}
		})
	}
	resp, b := do(t, "POST", srv.URL+"/things", `{"name":"a","count":2}`)
	if resp.StatusCode != 201 || !strings.Contains(string(b), `"count":2`) {
		t.Errorf("valid body: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(logs.String(), "hunter2") {
		t.Error("the cause of a 500 should be logged for the operator")
	}
}

func TestRequestIDAndMetrics(t *testing.T) {
	srv, reg, logs := newTestServer(t, nil)
	resp, _ := do(t, "GET", srv.URL+"/things/customer-13800138000", "", RequestIDHeader, "abc-123")
	if got := resp.Header.Get(RequestIDHeader); got != "abc-123" {
		t.Errorf("request id echoed %q", got)
	}
	resp, _ = do(t, "GET", srv.URL+"/things/2", "", RequestIDHeader, "bad id with spaces")
	if got := resp.Header.Get(RequestIDHeader); got == "" || strings.Contains(got, " ") {
		t.Errorf("generated request id %q", got)
	}
	do(t, "GET", srv.URL+"/random/path/1", "")

	if got := testutil.ToFloat64(mustCounter(t, reg, "http_requests_total", map[string]string{"service": "consent", "method": "GET", "route": "/things/{id}", "status": "200"})); got != 2 {
		t.Errorf("requests for route template = %v, want 2", got)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "http_requests_total", map[string]string{"service": "consent", "method": "GET", "route": "unmatched", "status": "404"})); got != 1 {
		t.Errorf("unmatched = %v", got)
	}
	// Raw paths never become labels or log fields.
	resp, body := do(t, "GET", srv.URL+"/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics %d", resp.StatusCode)
	}
	for _, leak := range []string{"13800138000", "/random/path"} {
		if strings.Contains(string(body), leak) || strings.Contains(logs.String(), leak) {
			t.Errorf("raw path %q leaked into metrics or logs", leak)
		}
	}
	for _, want := range []string{
		`http_request_duration_seconds_bucket{method="GET",route="/things/{id}",service="consent",le="0.005"}`,
		`http_request_duration_seconds_bucket{method="GET",route="/things/{id}",service="consent",le="0.5"}`,
		`http_request_duration_seconds_bucket{method="GET",route="/things/{id}",service="consent",le="1"}`,
		`http_request_duration_seconds_bucket{method="GET",route="/things/{id}",service="consent",le="10"}`,
		`request_queue_length{service="consent"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
			c.Add(m.GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

func TestInFlightGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	release := make(chan struct{})
	entered := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	srv := httptest.NewServer(Middleware{Service: "psi", Log: slog.New(slog.DiscardHandler), Metrics: m}.Wrap(mux))
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(srv.URL + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	if got := testutil.ToFloat64(m.inflight.WithLabelValues("psi")); got != 1 {
		t.Errorf("in flight = %v, want 1", got)
	}
	close(release)
	<-done
	if got := testutil.ToFloat64(m.inflight.WithLabelValues("psi")); got != 0 {
		t.Errorf("in flight after = %v, want 0", got)
	}
}

func TestReady(t *testing.T) {
	healthy := true
	checks := []Check{
		{Name: "database", Fn: func(context.Context) error { return nil }},
		{Name: "cache", Fn: func(context.Context) error {
			if healthy {
				return nil
			}
			return errors.New("connection refused")
		}},
	}
	srv, _, _ := newTestServer(t, checks)
	resp, b := do(t, "GET", srv.URL+"/ready", "")
	if resp.StatusCode != 200 {
		t.Fatalf("ready %d %s", resp.StatusCode, b)
	}
	healthy = false
	resp, b = do(t, "GET", srv.URL+"/ready", "")
	if resp.StatusCode != 503 {
		t.Fatalf("ready %d %s", resp.StatusCode, b)
	}
	var body ReadyBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if body.Error == nil || !strings.Contains(body.Error.Message, "cache") || strings.Contains(body.Error.Message, "database") {
		t.Errorf("body does not name the failed check: %s", b)
	}
	resp, _ = do(t, "GET", srv.URL+"/health", "")
	if resp.StatusCode != 200 {
		t.Errorf("health %d while cache is down", resp.StatusCode)
	}
}

func TestProbeTimeout(t *testing.T) {
	slow := Check{Name: "peer:partner", Fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	body := Probe(context.Background(), []Check{slow}, 20*time.Millisecond)
	if body.Status != "not_ready" || body.Checks[0].OK {
		t.Errorf("a hanging check must fail at its deadline: %+v", body)
	}
}

func TestPeerCheck(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			w.WriteHeader(404)
		}
	}))
	defer up.Close()
	if err := PeerCheck(up.Client(), "p", up.URL+"/").Fn(context.Background()); err != nil {
		t.Errorf("healthy peer: %v", err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	if err := PeerCheck(down.Client(), "p", down.URL).Fn(context.Background()); err == nil {
		t.Error("503 peer passed")
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"name":"a","count":1}`))
	f.Add([]byte(`{"name":`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"count":1e999}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/", bytes.NewReader(data))
		req.Body = http.MaxBytesReader(rec, req.Body, 256)
		var p payload
		err := DecodeJSON(req, &p)
		if err == nil {
			return
		}
		var he *Error
		if !errors.As(err, &he) || he.Status < 400 || he.Status >= 500 {
			t.Fatalf("decode error must be a 4xx *Error, got %v", err)
		}
	})
}

// TestUnknownMethodsAddBoundedSeries: the method label is one of a fixed
// set, so callers choosing methods cannot grow the metrics without bound
// (issue 12, finding 3).
func TestUnknownMethodsAddBoundedSeries(t *testing.T) {
	srv, reg, _ := newTestServer(t, nil)
	do(t, "GET", srv.URL+"/health", "")
	before := testutil.CollectAndCount(reg, "http_requests_total", "http_request_duration_seconds")
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for i := range 1000 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for j := range b {
			b[j] = letters[int(b[j])%len(letters)]
		}
		path := []string{"/health", "/things/1", "/nowhere"}[i%3]
		resp, _ := do(t, "X"+string(b[:]), srv.URL+path, "")
		if resp.StatusCode < 400 {
			t.Fatalf("method X%s: %d", b, resp.StatusCode)
		}
	}
	after := testutil.CollectAndCount(reg, "http_requests_total", "http_request_duration_seconds")
	// At most: method "other" × {unmatched, /health, /things/{id}} routes ×
	// a few statuses, in both metrics.
	if added := after - before; added > 12 {
		t.Errorf("1000 requests with random methods added %d series", added)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "http_requests_total", map[string]string{"method": "other", "status": "405"})); got == 0 {
		t.Error("no request counted under method=\"other\"")
	}
}
