package trainjob

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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

// metrics are the training service's Prometheus metrics.
type metrics struct {
	jobs    *prometheus.CounterVec   // finished jobs by role and final status
	running *prometheus.GaugeVec     // runs in progress by role
	epoch   *prometheus.HistogramVec // epoch durations by role
	bytes   *prometheus.CounterVec   // protocol bytes by direction
}

// newMetrics registers the training metrics on reg (nil: a private
// registry); registering twice on one registry reuses the first
// collectors.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
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
	if m.jobs, err = register(reg, m.jobs); err != nil {
		return nil, err
	}
	if m.running, err = register(reg, m.running); err != nil {
		return nil, err
	}
	if m.epoch, err = register(reg, m.epoch); err != nil {
		return nil, err
	}
	if m.bytes, err = register(reg, m.bytes); err != nil {
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

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
