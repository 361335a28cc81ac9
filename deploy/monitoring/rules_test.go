package monitoring_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fedrisk/fedrisk/deploy/monitoring"
)

// Severities are the values of the severity label Alertmanager routes on
// (alertmanager.yml): critical pages, warning goes to chat.
var severities = []string{"critical", "warning"}

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName string `yaml:"job_name"`
	} `yaml:"scrape_configs"`
}

func readPrometheusConfig(t *testing.T) prometheusConfig {
	t.Helper()
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg prometheusConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	return cfg
}

func readRules(t *testing.T) []monitoring.RuleFile {
	t.Helper()
	files, err := monitoring.ReadRuleFiles(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *_rules.yml here")
	}
	return files
}

// TestRuleFilesListed: prometheus.yml loads every rule file of this
// directory and nothing else; each rule file has its promtool test file,
// which loads it.
func TestRuleFilesListed(t *testing.T) {
	cfg := readPrometheusConfig(t)
	var names []string
	for _, f := range readRules(t) {
		name := filepath.Base(f.Path)
		names = append(names, name)
		testFile := strings.TrimSuffix(name, ".yml") + "_test.yml"
		b, err := os.ReadFile(testFile)
		if err != nil {
			t.Errorf("%s has no promtool test file: %v", name, err)
			continue
		}
		var tf struct {
			RuleFiles []string `yaml:"rule_files"`
		}
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Errorf("%s: %v", testFile, err)
		} else if !slices.Contains(tf.RuleFiles, name) {
			t.Errorf("%s does not load %s (rule_files %v)", testFile, name, tf.RuleFiles)
		}
	}
	listed := slices.Clone(cfg.RuleFiles)
	slices.Sort(listed)
	if !slices.Equal(listed, names) {
		t.Errorf("prometheus.yml rule_files %v, want every rule file here: %v", cfg.RuleFiles, names)
	}
}

// TestRulesUseExportedMetrics checks every recording and alerting rule:
// each metric it selects is exported by a node (metrics.txt), by an
// exporter prometheus.yml scrapes (exporter_metrics.txt) or recorded by a
// rule, and each label it relies on is on its input. The recording rule
// behind the HPA's object metric exists in its agreed group.
func TestRulesUseExportedMetrics(t *testing.T) {
	cfg := readPrometheusConfig(t)
	jobs := map[string]bool{}
	for _, s := range cfg.ScrapeConfigs {
		jobs[s.JobName] = true
	}
	files := readRules(t)
	c := monitoring.NewChecker(readCatalogue(t))
	if err := c.RecordAll(files); err != nil {
		t.Error(err)
	}
	groups := map[string]string{}
	hpaMetric := false
	for _, f := range files {
		for _, g := range f.Groups {
			if other, dup := groups[g.Name]; dup {
				t.Errorf("group %s is in %s and %s", g.Name, other, f.Path)
			}
			groups[g.Name] = f.Path
			for _, r := range g.Rules {
				if r.Record == "http_request_duration_p95" && g.Name == "federated_risk_recording" {
					hpaMetric = true
				}
				_, uses, err := c.Check(r.Expr)
				if err != nil && r.Alert != "" {
					t.Errorf("%s: alert %s: %v", f.Path, r.Alert, err)
				}
				for _, u := range uses {
					if u.Family.Job != "" && !jobs[u.Family.Job] {
						t.Errorf("%s: %s%s uses %s from job %s, which prometheus.yml does not scrape", f.Path, r.Alert, r.Record, u.Metric, u.Family.Job)
					}
				}
			}
		}
	}
	if !hpaMetric {
		t.Error("no recording rule http_request_duration_p95 in group federated_risk_recording (the HPA's object metric)")
	}
}

// TestAlertsAreDocumented: every alert has a severity Alertmanager routes,
// a summary, a description and a runbook_url pointing at its section of
// README.md.
func TestAlertsAreDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ +(.+?) *$`).FindAllStringSubmatch(string(readme), -1) {
		headings[anchor(m[1])] = true
	}
	for _, f := range readRules(t) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if !slices.Contains(severities, r.Labels["severity"]) {
					t.Errorf("%s: alert %s: severity %q, want one of %v", f.Path, r.Alert, r.Labels["severity"], severities)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: alert %s has no %s annotation", f.Path, r.Alert, a)
					}
				}
				url := r.Annotations["runbook_url"]
				want := "deploy/monitoring/README.md#" + anchor(r.Alert)
				if url != want {
					t.Errorf("%s: alert %s: runbook_url %q, want %q", f.Path, r.Alert, url, want)
				}
				if !headings[anchor(r.Alert)] {
					t.Errorf("README.md has no section for alert %s (a heading %q)", r.Alert, "### "+r.Alert)
				}
			}
		}
	}
}

// anchor is the fragment GitHub and most Markdown renderers give a heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
