package trainjob

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/metrics"
)

// Registrar registers the halves of trained models (the node's model
// registry). The guest asks for the version at job start; each party
// registers its own half under that model id and version when the job
// succeeds.
type Registrar interface {
	// NextVersion reserves the next version of modelID (guest).
	NextVersion(ctx context.Context, modelID string) (string, error)
	// Register stores this party's half (role guest or host) with its
	// model card (JSON).
	Register(ctx context.Context, role string, modelID, version string, half []byte, card []byte) error
}

// Metrics are the training service's Prometheus metrics.
type Metrics struct {
	jobs    *prometheus.CounterVec   // finished jobs by role and final status
	running *prometheus.GaugeVec     // runs in progress by role
	epoch   *prometheus.HistogramVec // epoch durations by role
	bytes   *prometheus.CounterVec   // protocol bytes by direction
}

// NewMetrics registers the training metrics on reg (nil: a private
// registry); registering twice on one registry reuses the first
// collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "training_jobs_total",
			Help: "Training jobs that ended, by role (guest or host) and status (succeeded, failed, cancelled).",
		}, []string{"role", "status"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "training_jobs_running",
			Help: "Training runs in progress on this node, by role.",
		}, []string{"role"}),
		epoch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "training_epoch_duration_seconds",
			Help:    "Wall time of finished training epochs (batches and validation), by role.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"role"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "training_bytes_total",
			Help: "Encoded training protocol messages exchanged with peers, by direction (sent or received).",
		}, []string{"direction"}),
	}
	var err error
	if m.jobs, err = metrics.Register(reg, m.jobs); err != nil {
		return nil, err
	}
	if m.running, err = metrics.Register(reg, m.running); err != nil {
		return nil, err
	}
	if m.epoch, err = metrics.Register(reg, m.epoch); err != nil {
		return nil, err
	}
	if m.bytes, err = metrics.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	for _, r := range []string{RoleGuest, RoleHost} {
		m.running.WithLabelValues(r)
		m.epoch.WithLabelValues(r)
		for _, s := range []string{StatusSucceeded, StatusFailed, StatusCancelled} {
			m.jobs.WithLabelValues(r, s)
		}
	}
	m.bytes.WithLabelValues("sent")
	m.bytes.WithLabelValues("received")
	return m, nil
}
