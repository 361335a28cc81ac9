package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
)

// metricsCatalogue is the one list of what a node exports, read by the
// deploy module's tests of the alert rules and the Grafana dashboards.
const metricsCatalogue = "../../deploy/monitoring/metrics.txt"

var updateCatalogue = flag.Bool("update", false, "rewrite "+metricsCatalogue+" from a running node")

// catalogueEntry is one line of the catalogue: a metric family, its type,
// its label names (sorted) and the condition under which a node exports it
// ("" always; "redis": only with a Redis cache).
type catalogueEntry struct {
	Name, Type string
	Labels     []string
	When       string
}

func (e catalogueEntry) String() string {
	labels := "-"
	if len(e.Labels) > 0 {
		labels = strings.Join(e.Labels, ",")
	}
	s := e.Name + " " + e.Type + " " + labels
	if e.When != "" {
		s += " " + e.When
	}
	return s
}

const catalogueHeader = `# What a fedrisk node exports on /metrics: every metric family of
# ` + "`fedrisk serve`" + ` with all services (the binary's registry: the services'
# metrics, the Go and process collectors and fedrisk_build_info).
#
#   NAME TYPE LABELS [WHEN]
#
# LABELS are the family's own label names, comma-separated ("-": none);
# Prometheus adds job and instance (and any target labels) when it scrapes.
# Histograms also have NAME_bucket{le}, NAME_sum and NAME_count series,
# summaries NAME{quantile}, NAME_sum and NAME_count. WHEN "redis": exported
# only when the node's cache is Redis (redis_url set).
#
# Kept honest by cmd/fedrisk TestMetricsCatalogue, which starts a node and
# compares its /metrics with this file; regenerate with
#   go test ./cmd/fedrisk -run TestMetricsCatalogue -update
# (with FEDRISK_TEST_REDIS_URL set, so the Redis-only families are seen).
# The deploy module's tests check every PromQL expression of the alert and
# recording rules and of the Grafana dashboards against this file and
# exporter_metrics.txt beside it.
`

// TestMetricsCatalogue starts a node the way `fedrisk serve` does (the
// binary's registry, all services, on 127.0.0.1:0), scrapes every
// listener's /metrics and compares the families, their types and label
// names with deploy/monitoring/metrics.txt. Families that are registered
// but have no series in a fresh node (a vec whose labels are only known once
// a model scored or a host was called) are compared on their registered
// descriptor: name and labels; their type in the file cannot be checked here
// and is logged. With FEDRISK_TEST_REDIS_URL set the node uses Redis, so the
// families marked "redis" are checked too; without it they must be absent.
func TestMetricsCatalogue(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	for _, s := range config.AllServices() {
		cfg.Addrs[s] = "127.0.0.1:0"
	}
	cfg.HTTP.ShutdownGrace = 5 * time.Second
	withRedis := false
	if u := os.Getenv("FEDRISK_TEST_REDIS_URL"); u != "" {
		cfg.RedisURL = u
		withRedis = true
	}
	reg := newRegistry(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: reg, Build: "test"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("node did not stop within 10s")
		}
	})

	// One request to each listener gives the request metrics their series.
	scraped := map[string]*dto.MetricFamily{}
	for _, svc := range cfg.Services {
		base := "http://" + n.Addr(svc)
		if code := httpGet(t, base+"/health", nil); code != http.StatusOK {
			t.Fatalf("%s /health: %d", svc, code)
		}
		var body bytes.Buffer
		if code := httpGet(t, base+"/metrics", &body); code != http.StatusOK {
			t.Fatalf("%s /metrics: %d", svc, code)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(&body)
		if err != nil {
			t.Fatalf("%s /metrics: %v", svc, err)
		}
		for name, f := range fams {
			scraped[name] = f
		}
	}
	registered := registeredLabels(t, reg)

	got := map[string]catalogueEntry{}
	for name, labels := range registered {
		e := catalogueEntry{Name: name, Type: "?", Labels: labels}
		if f, ok := scraped[name]; ok {
			e.Type = strings.ToLower(f.GetType().String())
		}
		got[name] = e
	}
	for name, f := range scraped {
		if _, ok := registered[name]; !ok {
			t.Errorf("%s is served on /metrics but not described by the registry", name)
		}
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		for l := range labels {
			if !slices.Contains(got[name].Labels, l) {
				t.Errorf("%s is served with label %q its descriptor lacks", name, l)
			}
		}
	}

	want, err := readCatalogue(metricsCatalogue)
	if err != nil && !(*updateCatalogue && errors.Is(err, os.ErrNotExist)) {
		t.Fatal(err)
	}
	if *updateCatalogue {
		writeCatalogue(t, got, want, withRedis)
		return
	}

	var descriptorOnly []string
	for _, w := range want {
		g, ok := got[w.Name]
		switch {
		case w.When == "redis" && !withRedis:
			if ok {
				t.Errorf("%s is marked redis-only in %s but a node with the in-memory cache exports it", w.Name, metricsCatalogue)
			}
			continue
		case w.When != "" && w.When != "redis":
			t.Errorf("%s: unknown condition %q in %s", w.Name, w.When, metricsCatalogue)
			continue
		case !ok:
			t.Errorf("%s is listed in %s but a running node does not export it (removed or renamed? update the catalogue and the rules and dashboards using it)", w.Name, metricsCatalogue)
			continue
		}
		if g.Type == "?" {
			descriptorOnly = append(descriptorOnly, w.Name)
		} else if g.Type != w.Type {
			t.Errorf("%s is a %s, %s says %s", w.Name, g.Type, metricsCatalogue, w.Type)
		}
		if !slices.Equal(g.Labels, w.Labels) {
			t.Errorf("%s has labels %v, %s says %v", w.Name, g.Labels, metricsCatalogue, w.Labels)
		}
	}
	for name, g := range got {
		if !slices.ContainsFunc(want, func(w catalogueEntry) bool { return w.Name == name }) {
			t.Errorf("the node exports %s, which %s does not list: add the line %q (go test ./cmd/fedrisk -run TestMetricsCatalogue -update)", name, metricsCatalogue, g.String())
		}
	}
	if len(descriptorOnly) > 0 {
		slices.Sort(descriptorOnly)
		t.Logf("without series in a fresh node, type not checked: %s", strings.Join(descriptorOnly, ", "))
	}
}

func httpGet(t *testing.T, url string, into *bytes.Buffer) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if into != nil {
		if _, err := into.ReadFrom(resp.Body); err != nil {
			t.Fatalf("read %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// descRE takes the name and label names out of prometheus.Desc.String().
var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// registeredLabels maps every metric family described by reg to its sorted
// label names (constant and variable), whether or not it has series yet.
func registeredLabels(t *testing.T, reg *prometheus.Registry) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	out := map[string][]string{}
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read descriptor %s", d)
		}
		names := []string{}
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
		slices.Sort(names)
		out[m[1]] = slices.Compact(append(out[m[1]], names...))
	}
	return out
}

func readCatalogue(path string) ([]catalogueEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []catalogueEntry
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 3 || len(fields) > 4 {
			return nil, fmt.Errorf("%s:%d: want NAME TYPE LABELS [WHEN], got %q", path, line, text)
		}
		e := catalogueEntry{Name: fields[0], Type: fields[1], Labels: []string{}}
		if fields[2] != "-" {
			e.Labels = strings.Split(fields[2], ",")
		}
		if len(fields) == 4 {
			e.When = fields[3]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// writeCatalogue rewrites the catalogue from what the node exports. Types
// of families without series are kept from the old file ("?" for a new
// one: fill it in by hand); redis-only families are kept when the node ran
// without Redis.
func writeCatalogue(t *testing.T, got map[string]catalogueEntry, old []catalogueEntry, withRedis bool) {
	t.Helper()
	oldBy := map[string]catalogueEntry{}
	for _, o := range old {
		oldBy[o.Name] = o
	}
	var lines []catalogueEntry
	for name, g := range got {
		o, had := oldBy[name]
		if g.Type == "?" && had {
			g.Type = o.Type
		}
		if had && o.When == "redis" {
			g.When = "redis"
		}
		lines = append(lines, g)
	}
	for _, o := range old {
		if _, ok := got[o.Name]; !ok && o.When == "redis" && !withRedis {
			lines = append(lines, o)
		}
	}
	slices.SortFunc(lines, func(a, b catalogueEntry) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	b.WriteString(catalogueHeader)
	for _, l := range lines {
		b.WriteString(l.String() + "\n")
	}
	if err := os.WriteFile(metricsCatalogue, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d families)", metricsCatalogue, len(lines))
}
