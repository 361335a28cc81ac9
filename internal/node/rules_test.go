package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promparser "github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
)

// The monitoring files this test keeps honest, relative to this package.
const (
	alertRulesFile = "../../deploy/monitoring/alert_rules.yml"
	prometheusFile = "../../deploy/monitoring/prometheus.yml"
)

// runbookAlerts are the runbook's ten rules of group federated_risk_alerts
// with their `for` durations and severities (monitoring/alert_rules.yml in
// runbook.zh.md).
var runbookAlerts = map[string]struct{ For, Severity string }{
	"ServiceDown":            {"1m", "critical"},
	"HighErrorRate":          {"2m", "warning"},
	"HighLatency":            {"3m", "warning"},
	"HighMemoryUsage":        {"5m", "warning"},
	"HighCPUUsage":           {"5m", "warning"},
	"DiskSpaceLow":           {"5m", "warning"},
	"DatabaseConnectionHigh": {"2m", "warning"},
	"PSIPerformanceDegraded": {"3m", "warning"},
	"ModelInferenceSlowdown": {"2m", "warning"},
	"PrivacyBudgetLow":       {"0s", "critical"},
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// exporterMetric is a metric that does not come from fedrisk: `up` from
// Prometheus itself, the rest from the exporters of prometheus.yml.
type exporterMetric struct {
	Job    string   // scrape job that exports it ("" for up: every job)
	Labels []string // the metric's own labels (besides job and instance)
}

// exporterMetrics is the allowlist for metrics the rules take from outside
// fedrisk, with the labels the exporters export them with (seen on Debian
// bookworm's prometheus-node-exporter 1.5 and prometheus-postgres-exporter
// 0.11). A rule that uses another exporter metric, or another label of one
// of these, fails the test until the entry is added here after checking
// the exporter:
//   - node-exporter: meminfo, cpu and filesystem collectors;
//   - postgres-exporter: pg_stat_activity collector, one series per
//     database and connection state (server: the DSN's host:port);
//   - redis-exporter: no rule uses it yet (ServiceDown covers it via up).
var exporterMetrics = map[string]exporterMetric{
	"up":                             {Job: ""},
	"node_memory_MemAvailable_bytes": {Job: "node-exporter"},
	"node_memory_MemTotal_bytes":     {Job: "node-exporter"},
	"node_cpu_seconds_total":         {Job: "node-exporter", Labels: []string{"cpu", "mode"}},
	"node_filesystem_avail_bytes":    {Job: "node-exporter", Labels: []string{"device", "fstype", "mountpoint"}},
	"node_filesystem_size_bytes":     {Job: "node-exporter", Labels: []string{"device", "fstype", "mountpoint"}},
	"pg_stat_activity_count":         {Job: "postgres-exporter", Labels: []string{"datname", "server", "state"}},
}

// exporterJob names the scrape job of an exporter metric by its prefix.
func exporterJob(metric string) (string, bool) {
	switch {
	case metric == "up":
		return "", true
	case strings.HasPrefix(metric, "node_"):
		return "node-exporter", true
	case strings.HasPrefix(metric, "pg_"):
		return "postgres-exporter", true
	case strings.HasPrefix(metric, "redis_"):
		return "redis-exporter", true
	}
	return "", false
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			For    string            `yaml:"for"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// use is one metric a rule selects and the labels the rule relies on it
// having (label matchers, and by-labels of the aggregations around it).
type use struct {
	alert, metric string
	labels        []string
}

// ruleUses parses every rule's expression with the PromQL parser and
// returns the metrics and labels each one selects. It checks the group
// against the runbook's ten rules on the way.
func ruleUses(t *testing.T) []use {
	t.Helper()
	b, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	if len(f.Groups) != 1 || f.Groups[0].Name != "federated_risk_alerts" {
		t.Fatalf("%s: want the one group federated_risk_alerts, got %d groups", alertRulesFile, len(f.Groups))
	}
	p := promparser.NewParser(promparser.Options{})
	var uses []use
	seen := map[string]bool{}
	for _, r := range f.Groups[0].Rules {
		want, ok := runbookAlerts[r.Alert]
		if !ok {
			t.Errorf("alert %q is not one of the runbook's rules", r.Alert)
			continue
		}
		seen[r.Alert] = true
		if r.For != want.For || r.Labels["severity"] != want.Severity {
			t.Errorf("alert %s: for %q severity %q, the runbook has for %q severity %q", r.Alert, r.For, r.Labels["severity"], want.For, want.Severity)
		}
		expr, err := p.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("alert %s: expression does not parse: %v", r.Alert, err)
			continue
		}
		promparser.Inspect(expr, func(n promparser.Node, path []promparser.Node) error {
			vs, ok := n.(*promparser.VectorSelector)
			if !ok {
				return nil
			}
			u := use{alert: r.Alert, metric: vs.Name}
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					if u.metric == "" {
						u.metric = m.Value
					}
					continue
				}
				u.labels = append(u.labels, m.Name)
			}
			for _, anc := range path {
				if agg, ok := anc.(*promparser.AggregateExpr); ok && !agg.Without {
					u.labels = append(u.labels, agg.Grouping...)
				}
			}
			if u.metric == "" {
				t.Errorf("alert %s: selector %s names no metric", r.Alert, vs)
				return nil
			}
			uses = append(uses, u)
			return nil
		})
	}
	for name := range runbookAlerts {
		if !seen[name] {
			t.Errorf("%s lacks the runbook's alert %s", alertRulesFile, name)
		}
	}
	return uses
}

// scrapeJobs returns the job names of prometheus.yml and checks that it
// loads the rules.
func scrapeJobs(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(prometheusFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", prometheusFile, err)
	}
	if !slices.Contains(cfg.RuleFiles, "alert_rules.yml") {
		t.Errorf("%s does not load alert_rules.yml: rule_files %v", prometheusFile, cfg.RuleFiles)
	}
	jobs := map[string]bool{}
	for _, s := range cfg.ScrapeConfigs {
		jobs[s.JobName] = true
	}
	return jobs
}

// exposition maps each series name of a /metrics answer to the label names
// seen on it.
type exposition map[string]map[string]bool

// scrape GETs url and parses every sample line with the PromQL series parser.
func scrape(t *testing.T, url string, into exposition) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := promparser.NewParser(promparser.Options{})
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ') // promhttp writes no timestamps
		if i < 0 {
			t.Fatalf("%s: bad sample line %q", url, line)
		}
		lset, err := p.ParseMetric(line[:i])
		if err != nil {
			t.Fatalf("%s: sample line %q: %v", url, line, err)
		}
		name := lset.Get("__name__")
		if into[name] == nil {
			into[name] = map[string]bool{}
		}
		lset.Range(func(l labels.Label) {
			if l.Name != "__name__" {
				into[name][l.Name] = true
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
}

// descRE takes the name and label names out of prometheus.Desc.String().
var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// described maps every metric family registered on reg to its label names
// (constant and variable), whether or not it has series yet.
func described(t *testing.T, reg *prometheus.Registry) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	out := map[string][]string{}
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read descriptor %s", d)
		}
		var names []string
		for _, kv := range strings.Split(m[2], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				names = append(names, k)
			}
		}
		for _, v := range strings.Split(m[3], ",") {
			if v = strings.TrimSuffix(strings.TrimPrefix(v, "c("), ")"); v != "" {
				names = append(names, v)
			}
		}
		out[m[1]] = append(out[m[1]], names...)
	}
	return out
}

// TestAlertRulesUseExportedMetrics keeps deploy/monitoring/alert_rules.yml
// and the code from drifting apart: every metric a rule selects, with every
// label the rule relies on, must be exported by a running node's services
// (scraped from their /metrics); `up` and exporter metrics must be in the
// documented allowlist and come from a job of prometheus.yml.
//
// A metric vec only has series once a label set is used. The request
// metrics get theirs from one request to each listener, PSI pre-initialises
// both roles. A family that is registered but has no series yet (e.g.
// model_inference_duration_seconds{model,version} before any model scored)
// is accepted on its registered descriptor, name and labels checked, and
// logged.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	uses := ruleUses(t)
	jobs := scrapeJobs(t)
	for _, job := range []string{"consent-service", "psi-service", "model-serving"} {
		if !jobs[job] {
			t.Errorf("%s lacks the scrape job %s", prometheusFile, job)
		}
	}

	reg := prometheus.NewRegistry()
	n, _ := start(t, node.Options{Config: testConfig(t), Registry: reg, Build: "test"})
	exported := exposition{}
	for _, svc := range config.AllServices() {
		base := "http://" + n.Addr(svc)
		if code, body := get(t, http.DefaultClient, base+"/health"); code != http.StatusOK {
			t.Fatalf("%s /health: %d %s", svc, code, body)
		}
		scrape(t, base+"/metrics", exported)
	}
	registered := described(t, reg)

	var viaDescriptor []string
	for _, u := range uses {
		if job, ok := exporterJob(u.metric); ok {
			e, listed := exporterMetrics[u.metric]
			switch {
			case !listed:
				t.Errorf("alert %s uses %s, which is neither exported by fedrisk nor in the exporter allowlist (exporterMetrics in rules_test.go): check the %s documentation and add it", u.alert, u.metric, job)
				continue
			case e.Job != job:
				t.Errorf("allowlist: %s is listed under job %q, its prefix says %q", u.metric, e.Job, job)
			case job != "" && !jobs[job]:
				t.Errorf("alert %s uses %s from job %s, which %s does not scrape", u.alert, u.metric, job, prometheusFile)
			}
			for _, l := range u.labels {
				if !slices.Contains(targetLabels, l) && !slices.Contains(e.Labels, l) {
					t.Errorf("alert %s uses label %q of %s, which the allowlist does not give it (labels %v)", u.alert, l, u.metric, e.Labels)
				}
			}
			continue
		}

		have, ok := exported[u.metric]
		if !ok {
			base, labels, found := registeredFamily(registered, u.metric)
			if !found {
				t.Errorf("alert %s uses metric %s, which no service of a running node exports: not in the /metrics of %v, and not registered on the node's registry either (is the service that should export it wired into node.Builtin?)", u.alert, u.metric, config.AllServices())
				continue
			}
			viaDescriptor = append(viaDescriptor, fmt.Sprintf("%s (%s)", u.metric, base))
			have = map[string]bool{}
			for _, l := range labels {
				have[l] = true
			}
		}
		for _, l := range u.labels {
			if !slices.Contains(targetLabels, l) && !have[l] {
				t.Errorf("alert %s uses label %q of %s, which is exported with labels %v only", u.alert, l, u.metric, sortedKeys(have))
			}
		}
	}
	if len(viaDescriptor) > 0 {
		slices.Sort(viaDescriptor)
		t.Logf("registered but without series in a fresh node (checked on their descriptors): %s", strings.Join(slices.Compact(viaDescriptor), ", "))
	}
}

// registeredFamily finds the registered family of a series name: the name
// itself, or the histogram/summary a _bucket, _sum or _count series
// belongs to (a _bucket series also has the le label).
func registeredFamily(reg map[string][]string, series string) (string, []string, bool) {
	if labels, ok := reg[series]; ok {
		return series, labels, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		if labels, ok := reg[base]; ok {
			if suffix == "_bucket" {
				labels = append(slices.Clip(labels), "le")
			}
			return base, labels, true
		}
	}
	return "", nil, false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
