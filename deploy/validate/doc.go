// Package validate holds no production code: its tests check the deployment
// files under deploy/ (the Helm chart and the manifests rendered from it,
// the Compose stack, the monitoring configuration and the Grafana
// dashboards) with the libraries their consumers use (helm, k8s.io, istio,
// compose-go, grafana-foundation-sdk). It is a Go module of its own so that
// none of those libraries is linked into the fedrisk binary.
package validate
