package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/metrics"
)

func TestRegisterReusesTheFirstCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "things_total", Help: "Things."}
	a, err := metrics.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := metrics.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b.Inc()
	if a != b {
		t.Fatal("a second registration returned a collector of its own")
	}
	if _, err := metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "things_total", Help: "Other."})); err == nil {
		t.Fatal("a conflicting collector was accepted")
	}
}
