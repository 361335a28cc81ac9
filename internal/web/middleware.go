package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

type requestIDKey struct{}

// RequestID returns the request id stored in ctx by the middleware.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID returns ctx carrying id (for outbound calls and tests).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// Metrics are the request metrics of the runbook's alert rules, shared by
// every service of a node and told apart by the service label.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

// DurationBuckets resolve 5 ms .. 10 s and include the 0.5 s and 1 s
// thresholds of the HighLatency alert and the canary abort rule.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by service, method, route template and status code.",
		}, []string{"service", "method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by service, method and route template.",
			Buckets: DurationBuckets,
		}, []string{"service", "method", "route"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "request_queue_length",
			Help: "HTTP requests being handled right now (in flight), by service.",
		}, []string{"service"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight)
	return m
}

// Middleware wraps a service's mux with the shared conventions.
type Middleware struct {
	Service      string
	Log          *slog.Logger
	Metrics      *Metrics
	MaxBodyBytes int64
}

// Wrap returns h with request ids, panic recovery, body limits, JSON errors
// for plain-text errors, metrics and an access log. Route labels come from
// the ServeMux pattern the request matched ("unmatched" when none did), so
// raw paths — which may hold identifiers — never reach metrics or logs.
func (m Middleware) Wrap(h http.Handler) http.Handler {
	inflight := m.Metrics.inflight.WithLabelValues(m.Service)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inflight.Inc()
		defer inflight.Dec()

		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		r = r.WithContext(WithRequestID(r.Context(), id))
		if m.MaxBodyBytes > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, m.MaxBodyBytes)
		}
		rec := &statusRecorder{ResponseWriter: &jsonErrorWriter{ResponseWriter: w, r: r}}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				m.Log.ErrorContext(r.Context(), "panic in handler", "request_id", id, "panic", p)
				if !rec.wrote {
					WriteError(rec, r, nil, Errorf(http.StatusInternalServerError, "internal", "internal error"))
				}
			}
			route := routeOf(r.Pattern)
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			method := MethodLabel(r.Method)
			m.Metrics.requests.WithLabelValues(m.Service, method, route, strconv.Itoa(status)).Inc()
			m.Metrics.duration.WithLabelValues(m.Service, method, route).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if route == "/health" || route == "/ready" || route == "/metrics" {
				level = slog.LevelDebug
			}
			m.Log.Log(r.Context(), level, "request",
				"request_id", id, "method", method, "route", route, "status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000, "bytes", rec.bytes)
		}()
		h.ServeHTTP(rec, r)
	})
}

// MethodLabel maps a request method to the method label: the methods of
// RFC 9110 (and PATCH) as they are, anything else "other". The caller
// chooses the method, and every new label value would be a new series.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// routeOf turns a ServeMux pattern ("GET /consent/v1/consents/{id}") into
// the route label ("/consent/v1/consents/{id}").
func routeOf(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // drop a host part
	}
	return pattern
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush lets streaming handlers flush through the wrappers.
func (s *statusRecorder) Flush() {
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}
