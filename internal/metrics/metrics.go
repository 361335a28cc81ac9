// Package metrics holds what every package's newMetrics shares when it
// registers its Prometheus collectors on the registry the node hands it.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg. When a collector of the same description
// is already registered there (a second service of the process built the
// same metrics), it returns that one, so both count into the same series.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
