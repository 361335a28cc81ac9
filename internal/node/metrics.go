package node

import (
	"errors"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// teeRegisterer registers a service's collectors in the process registry
// (which the ops listener serves whole) and in the service's own (which its
// listener serves), so each service listener shows only its own series and
// a process running several services does not report every metric, and
// fire every alert, once per listener.
type teeRegisterer struct{ proc, own prometheus.Registerer }

func (t teeRegisterer) Register(c prometheus.Collector) error {
	err := t.proc.Register(c)
	if err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
		// Another service of the process registered it first: it is this
		// service's too.
		c = are.ExistingCollector
	}
	if oerr := t.own.Register(c); oerr != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(oerr, &are) {
			if err == nil {
				t.proc.Unregister(c)
			}
			return oerr
		}
	}
	return err
}

func (t teeRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t teeRegisterer) Unregister(c prometheus.Collector) bool {
	t.own.Unregister(c)
	return t.proc.Unregister(c)
}

// serviceGatherer is what the listener of service name shows on /metrics:
// the service's own metrics, and of the process's the ones no service
// owns (runtime, cache, build info), with series labelled for another
// service of the process (service="psi" on the consent listener) left out.
func serviceGatherer(name string, proc prometheus.Gatherer, own map[string]*prometheus.Registry) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mine, err := own[name].Gather()
		if err != nil {
			return nil, err
		}
		owned := map[string]bool{}
		for svc, reg := range own {
			fams, err := reg.Gather()
			if err != nil {
				return nil, err
			}
			for _, f := range fams {
				owned[f.GetName()] = owned[f.GetName()] || svc != name
			}
		}
		all, err := proc.Gather()
		if err != nil {
			return nil, err
		}
		out := mine
		for _, f := range all {
			if owned[f.GetName()] || slices.ContainsFunc(mine, func(m *dto.MetricFamily) bool { return m.GetName() == f.GetName() }) {
				continue
			}
			var keep []*dto.Metric
			for _, m := range f.Metric {
				if other := serviceLabel(m); other != "" && other != name && own[other] != nil {
					continue
				}
				keep = append(keep, m)
			}
			if len(keep) > 0 {
				f.Metric = keep
				out = append(out, f)
			}
		}
		slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
		return out, nil
	})
}

func serviceLabel(m *dto.Metric) string {
	for _, l := range m.Label {
		if l.GetName() == "service" {
			return l.GetValue()
		}
	}
	return ""
}
