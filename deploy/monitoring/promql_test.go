package monitoring_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/deploy/monitoring"
)

// TestCheckerCatchesDrift: the checker accepts expressions that only use
// exported metrics and labels they have, infers the labels of results, and
// names what is wrong otherwise.
func TestCheckerCatchesDrift(t *testing.T) {
	c := monitoring.NewChecker(readCatalogue(t))
	if err := c.Record("http_request_duration_p95", `histogram_quantile(0.95, sum without (instance, pod, method, route) (rate(http_request_duration_seconds_bucket[5m])))`); err != nil {
		t.Fatal(err)
	}
	good := []struct {
		expr   string
		labels []string
	}{
		{`up == 0`, []string{"instance", "job", "party"}},
		{`sum by (service) (rate(http_requests_total{status=~"5.."}[5m]))`, []string{"service"}},
		{`http_request_duration_p95{service="serving"} > 0.5`, []string{"job", "party", "service"}},
		{`histogram_quantile(0.9, sum by (le, role) (rate(psi_intersection_duration_seconds_bucket[5m])))`, []string{"role"}},
		{`sum by (version) (rate(http_requests_total[5m]) * on (job, instance) group_left (version) model_serving_info)`, []string{"version"}},
		{`sum without (datname, state) (pg_stat_activity_count) > 80`, []string{"instance", "job", "party", "server"}},
		{`rate(go_gc_duration_seconds_count[5m])`, []string{"instance", "job", "party"}},
		{`go_gc_duration_seconds{quantile="0.5"}`, []string{"instance", "job", "party", "quantile"}},
		{`label_replace(up, "target", "$1", "instance", "(.*)")`, []string{"instance", "job", "party", "target"}},
		{`scalar(sum(up)) * 2`, []string{}},
	}
	for _, g := range good {
		labels, _, err := c.Check(g.expr)
		if err != nil {
			t.Errorf("%s: %v", g.expr, err)
			continue
		}
		if !slices.Equal(labels, g.labels) {
			t.Errorf("%s: result labels %v, want %v", g.expr, labels, g.labels)
		}
	}
	bad := []struct{ expr, want string }{
		{`rate(http_request_total[5m])`, `metric "http_request_total"`},
		{`sum by (route) (request_queue_length)`, `label "route"`},
		{`privacy_budget_remaining{subject="x"}`, `label "subject"`},
		{`histogram_quantile(0.95, sum by (service) (rate(http_request_duration_seconds_bucket[5m])))`, `label "le"`},
		{`rate(http_requests_total[5m]) * on (job, instance) group_left (release) model_serving_info`, `label "release"`},
		{`rate(psi_intersection_duration_seconds_bucket[5m]) / on (model) rate(psi_intersection_duration_seconds_count[5m])`, `label "model"`},
		{`sum without (nonsense) (up)`, `label "nonsense"`},
		{`rate(privacy_budget_remaining_bucket[5m])`, `metric "privacy_budget_remaining_bucket"`},
		{`node_load1{mode="idle"}`, `label "mode"`},
		{`sum(`, `parse`},
	}
	for _, b := range bad {
		_, _, err := c.Check(b.expr)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %v, want one about %s", b.expr, err, b.want)
		}
	}
}
