package monitoring_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"
)

// receiverFor is where each severity must go.
var receiverFor = map[string]string{"critical": "pager", "warning": "chat"}

func loadAlertmanager(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.LoadFile("alertmanager.yml")
	if err != nil {
		t.Fatalf("alertmanager.yml: %v", err)
	}
	return cfg
}

// ruleAlert is one alerting rule's label set as Prometheus sends it.
type ruleAlert struct {
	name   string
	labels model.LabelSet
}

// ruleAlerts returns every alerting rule of the rule files, with the
// target labels a real alert carries.
func ruleAlerts(t *testing.T) []ruleAlert {
	t.Helper()
	var out []ruleAlert
	for _, f := range readRules(t) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				ls := model.LabelSet{"alertname": model.LabelValue(r.Alert), "job": "model-serving", "instance": "10.0.0.1:7003"}
				for k, v := range r.Labels {
					ls[model.LabelName(k)] = model.LabelValue(v)
				}
				out = append(out, ruleAlert{name: r.Alert, labels: ls})
			}
		}
	}
	return out
}

// TestAlertmanagerRoutesBySeverity sends every alert of the rule files
// through alertmanager.yml's routing tree: critical alerts reach the pager
// receiver only, warnings the chat receiver only, each grouped by alert
// name.
func TestAlertmanagerRoutesBySeverity(t *testing.T) {
	cfg := loadAlertmanager(t)
	root := dispatch.NewRoute(cfg.Route, nil)
	for _, a := range ruleAlerts(t) {
		want := receiverFor[string(a.labels["severity"])]
		var got []string
		for _, r := range root.Match(a.labels) {
			got = append(got, r.RouteOpts.Receiver)
			if _, ok := r.RouteOpts.GroupBy["alertname"]; !ok && !r.RouteOpts.GroupByAll {
				t.Errorf("%s: route to %s does not group by alertname", a.name, r.RouteOpts.Receiver)
			}
		}
		if !slices.Equal(got, []string{want}) {
			t.Errorf("%s (severity %s) goes to %v, want [%s]", a.name, a.labels["severity"], got, want)
		}
	}
	// The receivers exist and are of the kind the README describes.
	kinds := map[string]string{}
	for _, r := range cfg.Receivers {
		switch {
		case len(r.WebhookConfigs) == 1 && len(r.SlackConfigs) == 0:
			kinds[r.Name] = "webhook"
		case len(r.SlackConfigs) == 1 && len(r.WebhookConfigs) == 0:
			kinds[r.Name] = "slack"
		}
	}
	if kinds["pager"] != "webhook" || kinds["chat"] != "slack" {
		t.Errorf("receivers %v, want pager: one webhook, chat: one Slack-format webhook", kinds)
	}
}

// inhibited reports whether source silences target under cfg's rules.
func inhibited(cfg *config.Config, source, target model.LabelSet) bool {
	for _, r := range cfg.InhibitRules {
		if !amlabels.Matchers(r.SourceMatchers).Matches(source) || !amlabels.Matchers(r.TargetMatchers).Matches(target) {
			continue
		}
		equal := true
		for _, l := range r.Equal {
			if source[model.LabelName(l)] != target[model.LabelName(l)] {
				equal = false
			}
		}
		if equal {
			return true
		}
	}
	return false
}

func with(ls model.LabelSet, kv ...string) model.LabelSet {
	out := ls.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		out[model.LabelName(kv[i])] = model.LabelValue(kv[i+1])
	}
	return out
}

// TestAlertmanagerInhibition: ServiceDown silences every other alert of
// its instance and nothing elsewhere; a critical alert silences the
// warning of the same alert name and labels, not other warnings, and no
// warning silences anything.
func TestAlertmanagerInhibition(t *testing.T) {
	cfg := loadAlertmanager(t)
	down := model.LabelSet{"alertname": "ServiceDown", "severity": "critical", "job": "model-serving", "instance": "10.0.0.1:7003"}
	alerts := ruleAlerts(t)
	for _, a := range alerts {
		if a.name == "ServiceDown" {
			continue
		}
		if !inhibited(cfg, down, a.labels) {
			t.Errorf("ServiceDown of %s does not silence %s there", down["instance"], a.name)
		}
		if inhibited(cfg, with(down, "instance", "10.0.0.2:7003"), a.labels) {
			t.Errorf("ServiceDown of another instance silences %s", a.name)
		}
	}
	if inhibited(cfg, down, with(down, "job", "consent-service")) || inhibited(cfg, down, down) {
		t.Error("ServiceDown silences ServiceDown")
	}
	pairs := 0
	for _, c := range alerts {
		for _, w := range alerts {
			if c.labels["severity"] != "critical" || w.labels["severity"] != "warning" {
				continue
			}
			same := c.name == w.name
			if same {
				pairs++
			}
			if got := inhibited(cfg, c.labels, w.labels); got != same && c.name != "ServiceDown" {
				t.Errorf("critical %s silences warning %s: %v, want %v", c.name, w.name, got, same)
			}
			if inhibited(cfg, w.labels, c.labels) {
				t.Errorf("warning %s silences critical %s", w.name, c.name)
			}
			if same && inhibited(cfg, c.labels, with(w.labels, "service", "consent")) {
				t.Errorf("critical %s silences the warning of another service", c.name)
			}
		}
	}
	if pairs == 0 {
		t.Error("no alert has both a critical and a warning rule: the critical-silences-warning rule is untested")
	}
}

// TestAlertmanagerTemplates renders the chat receiver's title and text,
// as Alertmanager does, for a firing group of two alerts and a resolved
// one.
func TestAlertmanagerTemplates(t *testing.T) {
	cfg := loadAlertmanager(t)
	tmpl, err := template.FromGlobs(cfg.Templates)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExternalURL, _ = url.Parse("http://alertmanager:9093")
	var title, text string
	for _, r := range cfg.Receivers {
		if r.Name == "chat" {
			title, text = r.SlackConfigs[0].Title, r.SlackConfigs[0].Text
		}
	}
	start := time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)
	mk := func(instance string, end time.Time) *alert.Alert {
		return alert.New(model.Alert{
			Labels: model.LabelSet{"alertname": "HighLatency", "severity": "warning", "job": "model-serving", "instance": model.LabelValue(instance), "service": "serving"},
			Annotations: model.LabelSet{
				"summary":     "model-serving latency is high",
				"description": "model-serving (serving on " + model.LabelValue(instance) + ") P95 latency over the last 5 minutes is 812ms (threshold 500ms).",
				"runbook_url": "deploy/monitoring/README.md#highlatency",
			},
			StartsAt: start,
			EndsAt:   end,
		}, start, false)
	}
	group := model.LabelSet{"alertname": "HighLatency", "job": "model-serving"}

	firing := tmpl.Data("chat", group, nil, "", mk("10.0.0.1:7003", time.Time{}), mk("10.0.0.2:7003", time.Time{}))
	gotTitle, err := tmpl.ExecuteTextString(title, firing)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[FIRING:2] HighLatency (warning)"; gotTitle != want {
		t.Errorf("title %q, want %q", gotTitle, want)
	}
	gotText, err := tmpl.ExecuteTextString(text, firing)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"🔥 model-serving latency is high\n",
		"model-serving (serving on 10.0.0.1:7003) P95 latency over the last 5 minutes is 812ms (threshold 500ms).\n",
		"job=model-serving instance=10.0.0.2:7003 service=serving since 2026-03-01 08:30:00 UTC\n",
		"Runbook: deploy/monitoring/README.md#highlatency\n",
	} {
		if !strings.Contains(gotText, want) {
			t.Errorf("text lacks %q:\n%s", want, gotText)
		}
	}
	if n := strings.Count(gotText, "🔥"); n != 2 {
		t.Errorf("text has %d alerts, want 2:\n%s", n, gotText)
	}

	resolved := tmpl.Data("chat", group, nil, "", mk("10.0.0.1:7003", start.Add(time.Minute)))
	gotTitle, err = tmpl.ExecuteTextString(title, resolved)
	if err != nil {
		t.Fatal(err)
	}
	gotText, err = tmpl.ExecuteTextString(text, resolved)
	if err != nil {
		t.Fatal(err)
	}
	if gotTitle != "[RESOLVED] HighLatency (warning)" || !strings.HasPrefix(gotText, "✅ model-serving latency is high") {
		t.Errorf("resolved: title %q text %q", gotTitle, gotText)
	}
	t.Logf("resolved message:\n%s\n%s", gotTitle, gotText)
}
