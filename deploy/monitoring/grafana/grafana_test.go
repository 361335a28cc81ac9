package grafana_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"go.yaml.in/yaml/v3"

	"github.com/fedrisk/fedrisk/deploy/monitoring"
	"github.com/fedrisk/fedrisk/deploy/monitoring/grafana"
)

const dashboardsDir = "dashboards"

// committed reads every committed dashboard JSON by file name.
func committed(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestCommittedEqualsGenerated: the JSON in dashboards/ is exactly what the
// generator writes today, and nothing else is there.
func TestCommittedEqualsGenerated(t *testing.T) {
	want, err := grafana.Render()
	if err != nil {
		t.Fatal(err)
	}
	got := committed(t)
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s/%s is not committed: run go generate ./monitoring/grafana (in deploy/)", dashboardsDir, name)
		case !bytes.Equal(g, w):
			t.Errorf("%s/%s differs from what the generator writes: run go generate ./monitoring/grafana (in deploy/) and commit the result", dashboardsDir, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s/%s is not written by the generator: remove it or add it to grafana.Boards", dashboardsDir, name)
		}
	}
}

// strictErr reports the error of an SDK UnmarshalJSONStrict. They return a
// cog.BuildErrors even when nothing is wrong (a typed nil inside a non-nil
// error), so its length is what counts.
func strictErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) {
		if len(be) == 0 {
			return nil
		}
		return be
	}
	return err
}

// strictDecoder is what the SDK's generated types implement.
type strictDecoder interface{ UnmarshalJSONStrict([]byte) error }

// panelTypes gives, for each panel type the dashboards use, a fresh value
// for its options and for its custom field config (nil: none).
func panelTypes(kind string) (options, custom strictDecoder, ok bool) {
	switch kind {
	case "timeseries":
		return &timeseries.Options{}, &timeseries.FieldConfig{}, true
	case "stat":
		return &stat.Options{}, nil, true
	case "table":
		return &table.Options{}, &table.FieldConfig{}, true
	}
	return nil, nil, false
}

// decode unmarshals a committed dashboard strictly: no unknown field, no
// missing required one, no wrong type, down to each panel's options, field
// config and queries.
//
// In SDK v0.0.22 the strict decoders of the variant fields (panels, their
// targets, options and custom field config) cannot be trusted with values:
// each wraps a generated UnmarshalJSONStrict that returns a typed-nil
// cog.BuildErrors on success, takes that non-nil error for a failure and
// drops the decoded value (PanelOrRowPanel: the panel; the Prometheus
// dataquery config: the query; the panel configs: options and custom field
// config), while the caller drops the empty error. A dashboard so decoded
// has null panels and no targets, without an error. Errors still come
// through, so the decoders below run each generated UnmarshalJSONStrict
// themselves, keep its value and check the length of its error.
func decode(t *testing.T, name string, b []byte) dashboard.Dashboard {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	if err := strictErr(d.UnmarshalJSONStrict(b)); err != nil {
		t.Fatalf("%s: strict unmarshal: %v", name, err)
	}
	var raw struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	d.Panels = nil
	for i, r := range raw.Panels {
		var kind struct{ Type string }
		if err := json.Unmarshal(r, &kind); err != nil {
			t.Fatalf("%s: panels[%d]: %v", name, i, err)
		}
		var p dashboard.PanelOrRowPanel
		if kind.Type == "row" {
			p.RowPanel = &dashboard.RowPanel{}
			if err := strictErr(p.RowPanel.UnmarshalJSONStrict(r)); err != nil {
				t.Fatalf("%s: panels[%d]: strict unmarshal: %v", name, i, err)
			}
			if p.RowPanel.Panels == nil && !bytes.Contains(r, []byte(`"panels": null`)) {
				p.RowPanel.Panels = []dashboard.Panel{} // the decoder leaves an empty list nil
			}
		} else {
			panel, err := decodePanel(r)
			if err != nil {
				t.Fatalf("%s: panels[%d]: strict unmarshal: %v", name, i, err)
			}
			p.Panel = &panel
		}
		d.Panels = append(d.Panels, p)
	}
	return d
}

func decodePanel(raw []byte) (dashboard.Panel, error) {
	var p dashboard.Panel
	if err := strictErr(p.UnmarshalJSONStrict(raw)); err != nil {
		return p, err
	}
	options, custom, ok := panelTypes(p.Type)
	if !ok {
		return p, fmt.Errorf("panel type %q: add it to panelTypes in this test", p.Type)
	}
	var fields struct {
		Targets     []json.RawMessage `json:"targets"`
		Options     json.RawMessage   `json:"options"`
		FieldConfig json.RawMessage   `json:"fieldConfig"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return p, err
	}
	p.Targets = nil
	for i, rt := range fields.Targets {
		var q prometheus.Dataquery
		if err := strictErr(q.UnmarshalJSONStrict(rt)); err != nil {
			return p, fmt.Errorf("targets[%d]: %w", i, err)
		}
		p.Targets = append(p.Targets, &q)
	}
	if fields.Options != nil {
		if err := strictErr(options.UnmarshalJSONStrict(fields.Options)); err != nil {
			return p, fmt.Errorf("options: %w", err)
		}
		p.Options = options
	}
	if fields.FieldConfig != nil {
		// Panel decodes fieldConfig leniently: check it strictly here.
		var fc dashboard.FieldConfigSource
		if err := strictErr(fc.UnmarshalJSONStrict(fields.FieldConfig)); err != nil {
			return p, fmt.Errorf("fieldConfig: %w", err)
		}
		var c struct {
			Defaults struct {
				Custom json.RawMessage `json:"custom"`
			} `json:"defaults"`
		}
		if err := json.Unmarshal(fields.FieldConfig, &c); err != nil {
			return p, err
		}
		if c.Defaults.Custom != nil {
			if custom == nil {
				return p, fmt.Errorf("fieldConfig.defaults.custom: a %s panel has none", p.Type)
			}
			if err := strictErr(custom.UnmarshalJSONStrict(c.Defaults.Custom)); err != nil {
				return p, fmt.Errorf("fieldConfig.defaults.custom: %w", err)
			}
			p.FieldConfig.Defaults.Custom = custom
		}
	}
	return p, nil
}

// TestStrictRoundTrip: each committed dashboard decodes strictly into the
// SDK's types (no unknown or mistyped field), validates, and encodes back
// to the same JSON.
func TestStrictRoundTrip(t *testing.T) {
	for name, b := range committed(t) {
		d := decode(t, name, b)
		if err := d.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
		again, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(append(again, '\n'), b) {
			t.Errorf("%s: decoding and encoding again changes the JSON", name)
		}
	}
}

// panels returns every panel of d, those inside collapsed rows included.
func panels(d dashboard.Dashboard) []dashboard.Panel {
	var out []dashboard.Panel
	for _, p := range d.Panels {
		if p.Panel != nil {
			out = append(out, *p.Panel)
		}
		if p.RowPanel != nil {
			out = append(out, p.RowPanel.Panels...)
		}
	}
	return out
}

func promQueries(t *testing.T, name string, p dashboard.Panel) []prometheus.Dataquery {
	t.Helper()
	var out []prometheus.Dataquery
	for _, target := range p.Targets {
		switch q := target.(type) {
		case prometheus.Dataquery:
			out = append(out, q)
		case *prometheus.Dataquery:
			out = append(out, *q)
		default:
			t.Errorf("%s: panel %q: query of type %T, want a Prometheus query", name, str(p.Title), target)
		}
	}
	return out
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func isFedriskDatasource(ds *common.DataSourceRef) bool {
	return ds != nil && str(ds.Uid) == grafana.DatasourceUID && str(ds.Type) == "prometheus"
}

// TestIdentifiersAndDatasources: dashboard uids (Grafana: at most 40
// characters) and titles are unique, panel ids unique within a dashboard,
// every panel has a title and a description, and every panel, query and
// variable queries the provisioned datasource, whose provisioning file has
// that uid.
func TestIdentifiersAndDatasources(t *testing.T) {
	uids, titles := map[string]string{}, map[string]string{}
	for name, b := range committed(t) {
		d := decode(t, name, b)
		uid, title := str(d.Uid), str(d.Title)
		if uid == "" || len(uid) > 40 {
			t.Errorf("%s: uid %q, want 1..40 characters", name, uid)
		}
		if other, dup := uids[uid]; dup {
			t.Errorf("%s and %s have the same uid %q", name, other, uid)
		}
		uids[uid] = name
		if other, dup := titles[title]; dup {
			t.Errorf("%s and %s have the same title %q", name, other, title)
		}
		titles[title] = name
		if !slices.Contains(d.Tags, grafana.Tag) {
			t.Errorf("%s lacks the tag %q its links menu lists dashboards by", name, grafana.Tag)
		}
		ids := map[uint32]bool{}
		use := func(id *uint32, title string) {
			if id == nil || ids[*id] {
				t.Errorf("%s: panel %q has no id or a repeated one", name, title)
				return
			}
			ids[*id] = true
		}
		for _, p := range d.Panels {
			if p.RowPanel != nil {
				use(&p.RowPanel.Id, str(p.RowPanel.Title))
			}
		}
		for _, p := range panels(d) {
			use(p.Id, str(p.Title))
			if str(p.Title) == "" || str(p.Description) == "" {
				t.Errorf("%s: every panel needs a title and a description (panel %q)", name, str(p.Title))
			}
			if !isFedriskDatasource(p.Datasource) {
				t.Errorf("%s: panel %q: datasource %+v, want uid %s", name, str(p.Title), p.Datasource, grafana.DatasourceUID)
			}
			for _, q := range promQueries(t, name, p) {
				if !isFedriskDatasource(q.Datasource) {
					t.Errorf("%s: panel %q: a query's datasource is %+v, want uid %s", name, str(p.Title), q.Datasource, grafana.DatasourceUID)
				}
			}
		}
		for _, v := range d.Templating.List {
			if v.Type == "query" && !isFedriskDatasource(v.Datasource) {
				t.Errorf("%s: variable %s: datasource %+v, want uid %s", name, v.Name, v.Datasource, grafana.DatasourceUID)
			}
		}
	}

	var prov struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile("provisioning/datasources/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Datasources) != 1 || prov.Datasources[0].UID != grafana.DatasourceUID || prov.Datasources[0].Type != "prometheus" {
		t.Errorf("provisioning/datasources/prometheus.yaml: %+v, want one prometheus datasource with uid %s", prov.Datasources, grafana.DatasourceUID)
	}
	var provider struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if b, err = os.ReadFile("provisioning/dashboards/fedrisk.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &provider); err != nil {
		t.Fatal(err)
	}
	if len(provider.Providers) != 1 || provider.Providers[0].Type != "file" || provider.Providers[0].Options.Path == "" {
		t.Errorf("provisioning/dashboards/fedrisk.yaml: %+v, want one file provider with a path", provider.Providers)
	}
}

// builtins are Grafana's global variables, replaced by a value of their
// kind before parsing.
var builtins = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "6h",
}

var (
	varRE    = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)
	legendRE = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	// labelValuesRE is a label_values(selector, label) variable query.
	labelValuesRE = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
)

// substitute replaces Grafana variables in expr: builtins by a value of
// their kind, the dashboard's own variables by a label value. An unknown
// variable is an error.
func substitute(expr string, vars map[string]bool) (string, error) {
	var unknown []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := builtins[name]; ok {
			return v
		}
		if vars[name] {
			return "value"
		}
		unknown = append(unknown, name)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

func checker(t *testing.T) *monitoring.Checker {
	t.Helper()
	cat, err := monitoring.ReadCatalogue("../metrics.txt", "../exporter_metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	c := monitoring.NewChecker(cat)
	rules, err := monitoring.ReadRuleFiles("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RecordAll(rules); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestQueriesUseExportedMetrics: every query of every panel and variable
// parses as PromQL once Grafana's variables are substituted, selects only
// metrics a node or a listed exporter exports (or a rule records), relies
// only on labels its input has, and its legend names only labels its
// result has.
func TestQueriesUseExportedMetrics(t *testing.T) {
	c := checker(t)
	n := 0
	for name, b := range committed(t) {
		d := decode(t, name, b)
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			query := ""
			if v.Query != nil {
				query = str(v.Query.String)
			}
			m := labelValuesRE.FindStringSubmatch(query)
			if m == nil {
				t.Errorf("%s: variable %s: query %q, want label_values(selector, label)", name, v.Name, query)
				continue
			}
			labels, _, err := c.Check(m[1])
			if err != nil {
				t.Errorf("%s: variable %s: %v", name, v.Name, err)
			} else if !slices.Contains(labels, m[2]) {
				t.Errorf("%s: variable %s: %s has no label %q (labels %v)", name, v.Name, m[1], m[2], labels)
			}
			n++
		}
		for _, p := range panels(d) {
			for _, q := range promQueries(t, name, p) {
				where := fmt.Sprintf("%s: panel %q query %s", name, str(p.Title), str(q.RefId))
				expr, err := substitute(q.Expr, vars)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				labels, _, err := c.Check(expr)
				if err != nil {
					t.Errorf("%s: %v\n\t%s", where, err, q.Expr)
					continue
				}
				for _, lm := range legendRE.FindAllStringSubmatch(str(q.LegendFormat), -1) {
					if !slices.Contains(labels, lm[1]) {
						t.Errorf("%s: legend %q names label %q, which the result does not have (labels %v)", where, str(q.LegendFormat), lm[1], labels)
					}
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no queries checked")
	}
	t.Logf("%d queries checked", n)
}

// TestCheckCatchesBrokenQueries: the query checks above fail on the kinds
// of mistakes they exist for.
func TestCheckCatchesBrokenQueries(t *testing.T) {
	c := checker(t)
	vars := map[string]bool{"service": true}
	for _, tc := range []struct{ expr, want string }{
		{`rate(http_requests_total{service=~"$servce"}[$__rate_interval])`, "unknown variables [servce]"},
		{`sum by (service) (rate(http_request_total[$__rate_interval]))`, `metric "http_request_total"`},
		{`sum by (route) (request_queue_length{service=~"$service"})`, `label "route"`},
	} {
		expr, err := substitute(tc.expr, vars)
		if err == nil {
			_, _, err = c.Check(expr)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one about %s", tc.expr, err, tc.want)
		}
	}
}
