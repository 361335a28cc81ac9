package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/health"
	"github.com/fedrisk/fedrisk/internal/health/healthprobe"
)

// Local addresses of the runbook's monitoring stack (--stack).
const (
	stackPrometheus   = "http://127.0.0.1:9090"
	stackAlertmanager = "http://127.0.0.1:9093"
	stackGrafana      = "http://127.0.0.1:3000"
)

func newHealthCmd(lookup env, stdout io.Writer) *cobra.Command {
	var (
		asJSON, liveness, stack                      bool
		timeout                                      time.Duration
		token                                        string
		only                                         []string
		consentURL, psiURL, servingURL, consoleURL   string
		opsURL, prometheusURL, alertmanagerURL, graf string
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check every service's /health and /ready, PostgreSQL, Redis, the monitoring stack and peers (exit 0 only when all are healthy)",
		Long: `Check a deployment as the runbook's health_check.sh does, one ✅/❌ line per item
and the list of failures; exit status 0 only when every item is healthy.

Targets come from the configuration (the same file, environment and flags as
serve): each service the node runs at its listen address (/health and /ready),
the ops listener (listen.ops), PostgreSQL (DATABASE_URL), Redis (REDIS_URL) and
every peer's /health. With tls.cert_file set the listeners are reached over
https, verified with tls.ca_file and presenting tls.client_cert_file (mutual
TLS). --token (or FEDRISK_TOKEN) is sent to the fedrisk listeners.
--consent-url, --psi-url, --serving-url, --console-url and --ops-url replace or
add a listener; --prometheus-url, --alertmanager-url and --grafana-url add the
monitoring stack, and --stack adds it at the runbook's local ports
(9090, 9093, 3000).

A container healthcheck probes only its own process:
  fedrisk health --liveness --only ops`,
		Args: noArgs,
	}
	cf := addConfigFlags(cmd)
	tok, _ := lookup("FEDRISK_TOKEN")
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "deadline of each check")
	fs.StringVar(&token, "token", tok, "bearer token for the fedrisk listeners (prefer env FEDRISK_TOKEN: arguments are visible to other users)")
	fs.StringSliceVar(&only, "only", nil, "check only these components (consent-service, psi-service, model-serving, console, ops, postgresql, redis, prometheus, alertmanager, grafana, peer:NAME), comma-separated")
	fs.BoolVar(&liveness, "liveness", false, "only /health of the fedrisk listeners: no /ready and no dependencies")
	fs.BoolVar(&stack, "stack", false, "also check Prometheus, Alertmanager and Grafana at "+stackPrometheus+", "+stackAlertmanager+" and "+stackGrafana+" (unless given by URL)")
	fs.StringVar(&consentURL, "consent-url", "", "consent-service base URL (replaces the configured listener)")
	fs.StringVar(&psiURL, "psi-url", "", "psi-service base URL")
	fs.StringVar(&servingURL, "serving-url", "", "model-serving base URL")
	fs.StringVar(&consoleURL, "console-url", "", "web console base URL")
	fs.StringVar(&opsURL, "ops-url", "", "ops listener base URL")
	fs.StringVar(&prometheusURL, "prometheus-url", "", "Prometheus base URL (/-/healthy)")
	fs.StringVar(&alertmanagerURL, "alertmanager-url", "", "Alertmanager base URL (/-/healthy)")
	fs.StringVar(&graf, "grafana-url", "", "Grafana base URL (/api/health)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if timeout <= 0 {
			return &usageError{fmt.Errorf("--timeout must be positive, got %v", timeout)}
		}
		l, err := cf.load(lookup)
		if err != nil {
			return err
		}
		t := healthprobe.FromConfig(l.Config)
		t.Liveness = liveness
		for component, u := range map[string]string{
			healthprobe.ConsentService: consentURL, healthprobe.PSIService: psiURL,
			healthprobe.ModelServing: servingURL, healthprobe.Console: consoleURL,
		} {
			if u != "" {
				t.Services[component] = u
			}
		}
		if opsURL != "" {
			t.Ops = opsURL
		}
		if stack {
			t.Prometheus, t.Alertmanager, t.Grafana = stackPrometheus, stackAlertmanager, stackGrafana
		}
		for _, o := range []struct {
			dst *string
			v   string
		}{{&t.Prometheus, prometheusURL}, {&t.Alertmanager, alertmanagerURL}, {&t.Grafana, graf}} {
			if o.v != "" {
				*o.dst = o.v
			}
		}
		// The probes only ask for /health: the peers' own CAs
		// (peers[].ca_file) verify their servers beside tls.ca_file.
		cas := splitList(l.TLS.CAFile)
		for _, p := range l.Peers {
			cas = append(cas, splitList(p.CAFile)...)
		}
		tlsCfg, err := healthprobe.ClientTLS(strings.Join(cas, ","), l.TLS.ClientCertFile, l.TLS.ClientKeyFile)
		if err != nil {
			return err
		}
		checks, unknown := health.Select(healthprobe.NewProber(tlsCfg, token).Checks(t), only)
		if len(unknown) > 0 {
			return &usageError{fmt.Errorf("--only: %v is not configured or not a component", unknown)}
		}
		rep := health.Run(cmd.Context(), checks, timeout)
		if asJSON {
			err = rep.WriteJSON(stdout)
		} else {
			err = rep.WriteText(stdout)
		}
		if err != nil {
			return err
		}
		return rep.Err()
	}
	return cmd
}
