package serving

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

// InferenceBuckets resolve 1 ms .. 1 s (the ModelInferenceSlowdown alert
// fires on a mean above 1 s).
var InferenceBuckets = []float64{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Metrics are the scoring service's metrics. Names are a contract (the
// runbook's alert rules and the HPA use them); labels never carry subjects.
// request_queue_length{service} (requests in flight) comes from the node's
// HTTP middleware (internal/web) for every service.
type Metrics struct {
	inference    *prometheus.HistogramVec // model_inference_duration_seconds{model,version}
	scores       *prometheus.CounterVec   // scoring_requests_total{outcome}
	partials     *prometheus.CounterVec   // scoring_partials_total{outcome}
	hostCalls    *prometheus.HistogramVec // scoring_host_call_duration_seconds{host}
	hostFailures *prometheus.CounterVec   // scoring_host_failures_total{host,code}
	remaining    *prometheus.GaugeVec     // privacy_budget_remaining{host,purpose}
	low          *prometheus.GaugeVec     // privacy_budget_low_subjects{host,purpose}
	info         *prometheus.GaugeVec     // model_serving_info{version,build}
}

// NewMetrics registers the scoring metrics on reg (nil: unregistered).
// release is the deployment's VERSION (stable or canary), build the
// binary's version; both are exported by model_serving_info.
func NewMetrics(reg prometheus.Registerer, release, build string) (*Metrics, error) {
	m := &Metrics{
		inference: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "model_inference_duration_seconds",
			Help:    "Time to score one request: on a guest the federated score (consent, features, hosts, combination), on a host one partial-score request.",
			Buckets: InferenceBuckets,
		}, []string{"model", "version"}),
		scores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scoring_requests_total",
			Help: "Scores answered by the guest, by outcome: scored, degraded (a host missing), refused (consent or budget), failed.",
		}, []string{"outcome"}),
		partials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scoring_partials_total",
			Help: "Partial scores asked of this host, by outcome: released (fresh, charged), cached (repeated, free), withheld (budget, degrade policy), refused (consent or budget), failed.",
		}, []string{"outcome"}),
		hostCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scoring_host_call_duration_seconds",
			Help:    "Duration of the guest's partial-score calls, by host.",
			Buckets: InferenceBuckets,
		}, []string{"host"}),
		hostFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scoring_host_failures_total",
			Help: "Host partials missing from scores, by host and reason code.",
		}, []string{"host", "code"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "privacy_budget_remaining",
			Help: "Smallest remaining fraction (0..1) of any subject's privacy budget in the current window, per purpose (1 when none was charged).",
		}, []string{"host", "purpose"}),
		low: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "privacy_budget_low_subjects",
			Help: "Subjects whose privacy budget in the current window has less than 20% left, per purpose.",
		}, []string{"host", "purpose"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "model_serving_info",
			Help: "Always 1: the release track (VERSION: stable or canary) and build of this scoring service.",
		}, []string{"version", "build"}),
	}
	m.info.WithLabelValues(release, build).Set(1)
	for _, o := range []string{"scored", "degraded", "refused", "failed"} {
		m.scores.WithLabelValues(o)
	}
	for _, o := range []string{"released", "cached", "withheld", "refused", "failed"} {
		m.partials.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.inference, m.scores, m.partials, m.hostCalls, m.hostFailures, m.remaining, m.low, m.info} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// SetBudgets exports a ledger snapshot.
func (m *Metrics) SetBudgets(gs []privacy.Gauge) {
	if m == nil {
		return
	}
	for _, g := range gs {
		m.remaining.WithLabelValues(g.Host, g.Purpose).Set(g.MinRemainingFraction)
		m.low.WithLabelValues(g.Host, g.Purpose).Set(float64(g.SubjectsBelow20Percent))
	}
}

func (m *Metrics) observe(model, version string, seconds float64) {
	if m != nil {
		m.inference.WithLabelValues(model, version).Observe(seconds)
	}
}

func (m *Metrics) score(outcome string) {
	if m != nil {
		m.scores.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) partial(outcome string) {
	if m != nil {
		m.partials.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) hostCall(host string, seconds float64) {
	if m != nil {
		m.hostCalls.WithLabelValues(host).Observe(seconds)
	}
}

func (m *Metrics) hostFailure(host, code string) {
	if m != nil {
		m.hostFailures.WithLabelValues(host, code).Inc()
	}
}
