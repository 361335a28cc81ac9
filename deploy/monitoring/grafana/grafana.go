// Package grafana builds fedrisk's Grafana dashboards in Go with the
// Grafana Foundation SDK. The JSON under ../grafana/dashboards is what this
// package writes; regenerate it after a change with
//
//	go generate ./monitoring/grafana   (from deploy/)
//
// and commit both. The tests check the committed JSON against the
// generator, a strict round trip through the SDK's types, Validate(),
// unique uids and panel ids, the datasource of every query, and that every
// PromQL expression parses and selects only metrics and labels a node or a
// listed exporter exports (../metrics.txt, ../exporter_metrics.txt) or a
// rule records.
//
// Every panel queries the provisioned Prometheus datasource, uid
// fedrisk-prometheus (provisioning/datasources/prometheus.yaml).
package grafana

//go:generate go run ./gen

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DatasourceUID is the uid of the provisioned Prometheus datasource.
const DatasourceUID = "fedrisk-prometheus"

// Tag marks every fedrisk dashboard (the dashboards' link menu lists them by it).
const Tag = "fedrisk"

// Board is one generated dashboard.
type Board struct {
	File  string // file name under dashboards/
	Build func() (dashboard.Dashboard, error)
}

// Boards lists every dashboard, in the order of the menu. The model health
// dashboard (issue 16, phase 2) is one more entry here.
func Boards() []Board {
	return []Board{
		{"overview.json", overview},
		{"consent.json", consent},
		{"psi.json", psi},
		{"training.json", training},
		{"scoring.json", scoring},
		{"privacy.json", privacy},
		{"infrastructure.json", infrastructure},
	}
}

// Render builds every dashboard and returns its JSON by file name, as the
// generator writes it (two-space indent, final newline).
func Render() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, b := range Boards() {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.File, err)
		}
		j, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.File, err)
		}
		out[b.File] = append(j, '\n')
	}
	return out, nil
}

// datasource is the reference every panel and query carries.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(DatasourceUID)}
}

// board wraps the SDK's builder and numbers the panels.
type board struct {
	*dashboard.DashboardBuilder
	id uint32
}

func newBoard(uid, title, description string) *board {
	b := dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Editable().
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("fedrisk dashboards").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).
			AsDropdown(true).
			KeepTime(true).
			IncludeVars(false))
	return &board{DashboardBuilder: b}
}

func (b *board) next() uint32 {
	b.id++
	return b.id
}

func (b *board) row(title string) {
	b.WithRow(dashboard.NewRowBuilder(title).Id(b.next()))
}

// query is one PromQL target of a panel.
type query struct{ expr, legend string }

func q(expr, legend string) query { return query{expr: expr, legend: legend} }

func targets(qs []query) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, x := range qs {
		out = append(out, prometheus.NewDataqueryBuilder().
			Expr(x.expr).
			LegendFormat(x.legend).
			RefId(string(rune('A'+i))).
			Datasource(datasource()))
	}
	return out
}

// ts is a time series panel of width w (of 24) and height h.
func (b *board) ts(w, h uint32, title, unit, description string, qs ...query) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Id(b.next()).
		Title(title).
		Description(description).
		Unit(unit).
		Datasource(datasource()).
		Span(w).
		Height(h).
		LineWidth(1).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true))
	for _, t := range targets(qs) {
		p.WithTarget(t)
	}
	return p
}

// stat is a single-value panel showing the last value of each series.
func (b *board) stat(w, h uint32, title, unit, description string, qs ...query) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().
		Id(b.next()).
		Title(title).
		Description(description).
		Unit(unit).
		Datasource(datasource()).
		Span(w).
		Height(h).
		GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeValue).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
	for _, t := range targets(qs) {
		p.WithTarget(t)
	}
	return p
}

// at is a threshold step: from v on, colour c.
func at(v float64, c string) dashboard.Threshold { return dashboard.Threshold{Value: &v, Color: c} }

// steps are absolute thresholds: a base colour, then the steps above it.
func steps(base string, above ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	s := append([]dashboard.Threshold{{Color: base}}, above...)
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(s)
}

// line draws the thresholds of a time series panel as dashed lines.
func line() *common.GraphThresholdsStyleConfigBuilder {
	return common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)
}

// upDown maps 1 and 0 to UP and DOWN.
func upDown() []dashboard.ValueMapping {
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{
		Type: dashboard.MappingTypeValueToText,
		Options: map[string]dashboard.ValueMappingResult{
			"0": {Text: cog.ToPtr("DOWN"), Color: cog.ToPtr("red")},
			"1": {Text: cog.ToPtr("UP"), Color: cog.ToPtr("green")},
		},
	}}}
}

// variable is a query variable over label values, "All" by default.
func variable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("All")},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")},
		})
}
