package psijob

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/metrics"
)

// DurationBuckets of psi_intersection_duration_seconds: 100 ms to an hour,
// resolving the 10 s of the PSIPerformanceDegraded alert.
var DurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600}

// Metrics are the PSI metrics of the runbook.
type Metrics struct {
	duration *prometheus.HistogramVec
	items    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// NewMetrics registers the PSI metrics on reg (nil: a private registry).
// Registering twice on one registry reuses the first collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "psi_intersection_duration_seconds",
			Help:    "Wall time of finished private set intersections, from start to result, by role (guest or host).",
			Buckets: DurationBuckets,
		}, []string{"role"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psi_items_total",
			Help: "Blinded points and tags exchanged with PSI peers, by role and direction (sent or received).",
		}, []string{"role", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psi_bytes_total",
			Help: "Payload bytes of PSI batches exchanged with peers, by role and direction (sent or received).",
		}, []string{"role", "direction"}),
	}
	var err error
	m.duration, err = metrics.Register(reg, m.duration)
	if err != nil {
		return nil, err
	}
	if m.items, err = metrics.Register(reg, m.items); err != nil {
		return nil, err
	}
	if m.bytes, err = metrics.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	for _, r := range []Role{RoleGuest, RoleHost} {
		m.duration.WithLabelValues(string(r))
		for _, d := range []string{"sent", "received"} {
			m.items.WithLabelValues(string(r), d)
			m.bytes.WithLabelValues(string(r), d)
		}
	}
	return m, nil
}

func (m *Metrics) traffic(role Role, direction string, items, bytes int) {
	if m == nil {
		return
	}
	m.items.WithLabelValues(string(role), direction).Add(float64(items))
	m.bytes.WithLabelValues(string(role), direction).Add(float64(bytes))
}

func (m *Metrics) finished(role Role, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(string(role)).Observe(d.Seconds())
}
