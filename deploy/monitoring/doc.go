// Package monitoring keeps fedrisk's monitoring files honest: every metric
// and label their PromQL uses must exist.
//
// It reads the catalogue of metrics a node exports (metrics.txt, checked
// against a running node by cmd/fedrisk TestMetricsCatalogue) and of the
// exporter metrics the rules and dashboards use (exporter_metrics.txt,
// checked against the Debian exporters by TestExporterCatalogue), and checks
// PromQL expressions against them: every selected metric must be in a
// catalogue (or recorded by a rule), and every label an expression relies on
// must be on its input.
//
// The tests beside it check the alert and recording rules (*_rules.yml), the
// Alertmanager configuration and prometheus.yml; package grafana under it
// generates and checks the Grafana dashboards. It is part of the deploy
// module, so none of this is linked into the fedrisk binary.
package monitoring
