package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/table"
)

// Selectors shared by several panels. Route labels are ServeMux patterns
// (internal/web routeOf), so {id} appears literally.
const (
	// longLived are the routes HighLatency and http_request_duration_p95
	// leave out: open for seconds to hours by design.
	longLived = `/consent/v1/revocations|/train/v1/peer/sessions/\\{session\\}/messages/\\{seq\\}`
	// scoreRoutes are the guest's single-score routes (the SLOs' requests).
	scoreRoutes = `service="serving",route=~"/score|/score/v1/score"`
	rate        = `[$__rate_interval]`
)

func overview() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-overview", "fedrisk / Overview",
		"Every scrape target's state and, per fedrisk service, request rate, 5xx ratio, P95/P99 latency and requests in flight. Series are summed over all instances: each service must be scraped once (its own listener or the ops listener, not both).")
	b.WithVariable(variable("service", "Service", "label_values(http_requests_total, service)"))
	sel := `service=~"$service"`

	b.row("Targets")
	b.WithPanel(b.stat(6, 6, "Targets down", "none",
		"Scrape targets whose last scrape failed (ServiceDown fires after 1 minute).",
		q(`count(up == 0) or vector(0)`, "down")).
		Thresholds(steps("green", at(1, "red"))).
		ColorMode(common.BigValueColorModeBackground))
	b.WithPanel(b.stat(18, 6, "Targets", "none",
		"Last scrape of each target: UP or DOWN.",
		q(`up`, "{{job}} {{instance}}")).
		Mappings(upDown()).
		Thresholds(steps("red", at(1, "green"))).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone))

	b.row("Requests")
	b.WithPanel(b.ts(12, 8, "Request rate by service", "reqps",
		"HTTP requests answered per second (http_requests_total), all routes including probes and scrapes.",
		q(`sum by (service) (rate(http_requests_total{`+sel+`}`+rate+`))`, "{{service}}")))
	b.WithPanel(b.ts(12, 8, "5xx ratio by service", "percentunit",
		"Share of requests answered with a 5xx. HighErrorRate fires above 5% (dashed line) for 2 minutes.",
		q(`sum by (service) (rate(http_requests_total{`+sel+`,status=~"5.."}`+rate+`)) / sum by (service) (rate(http_requests_total{`+sel+`}`+rate+`))`, "{{service}}")).
		Min(0).
		Thresholds(steps("green", at(0.05, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "P95 latency by service", "s",
		"95th percentile request time per service, without the long-lived routes (revocation stream, training long-poll). HighLatency fires above 500 ms (dashed line) for 3 minutes.",
		q(`histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket{`+sel+`,route!~"`+longLived+`"}`+rate+`)))`, "{{service}}")).
		Thresholds(steps("green", at(0.5, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "P99 latency by service", "s",
		"99th percentile request time per service, without the long-lived routes.",
		q(`histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{`+sel+`,route!~"`+longLived+`"}`+rate+`)))`, "{{service}}")))
	b.WithPanel(b.ts(8, 8, "http_request_duration_p95 (HPA metric)", "s",
		"The recording rule the model-serving HPA scales on (target 500 ms): P95 over 5 minutes per job and service, without probes, scrapes and long-lived routes.",
		q(`http_request_duration_p95{`+sel+`}`, "{{job}} {{service}}")).
		Thresholds(steps("green", at(0.5, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(12, 8, "In-flight requests by service", "none",
		"request_queue_length: requests being handled right now. The HPA's pods metric targets an average of 10 per model-serving pod.",
		q(`sum by (service) (request_queue_length{`+sel+`})`, "{{service}}")).
		Min(0))
	b.WithPanel(b.ts(12, 8, "Requests by status", "reqps",
		"Requests per second by HTTP status code.",
		q(`sum by (status) (rate(http_requests_total{`+sel+`}`+rate+`))`, "{{status}}")))

	b.row("Builds")
	b.WithPanel(table.NewPanelBuilder().
		Id(b.next()).
		Title("Running builds").
		Description("fedrisk_build_info of every scraped process: build version, release track (stable or canary), party and Go version.").
		Datasource(datasource()).
		Span(24).
		Height(6).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"})).
		WithTarget(prometheus.NewDataqueryBuilder().
			Expr(`fedrisk_build_info`).
			RefId("A").
			Instant().
			Format(prometheus.PromQueryFormatTable).
			Datasource(datasource())))
	return b.Build()
}

func consent() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-consent", "fedrisk / Consent",
		"The consent service: grants, withdrawals, consent tokens and the revocation stream, from the consent service's request metrics. Not exported yet: the revocation stream's lag at each host, and tokens a host verifies locally against the JWKS.")
	route := func(method, r string) string {
		return `service="consent",method="` + method + `",route="` + r + `",status=~"2.."`
	}
	grants := route("POST", "/consent/v1/consents")
	withdrawals := route("POST", "/consent/v1/consents/{id}/withdraw")
	issued := route("POST", "/consent/v1/consents/{id}/tokens")
	introspected := route("POST", "/consent/v1/tokens/introspect")

	b.row("In the selected time range")
	for _, s := range []struct{ title, sel, desc string }{
		{"Grants", grants, "Consents recorded (POST /consent/v1/consents answered 2xx)."},
		{"Withdrawals", withdrawals, "Consents withdrawn (POST /consent/v1/consents/{id}/withdraw answered 2xx)."},
		{"Tokens issued", issued, "Consent tokens issued to the guest's scoring (POST /consent/v1/consents/{id}/tokens answered 2xx)."},
		{"Tokens introspected", introspected, "Consent tokens hosts checked online with this consent service (POST /consent/v1/tokens/introspect answered 2xx)."},
	} {
		b.WithPanel(b.stat(6, 5, s.title, "none", s.desc,
			q(`sum(increase(http_requests_total{`+s.sel+`}[$__range]))`, s.title)).
			GraphMode(common.BigValueGraphModeNone))
	}

	b.row("Rates")
	b.WithPanel(b.ts(12, 8, "Grants and withdrawals", "reqps",
		"Consents granted and withdrawn per second.",
		q(`sum(rate(http_requests_total{`+grants+`}`+rate+`))`, "grants"),
		q(`sum(rate(http_requests_total{`+withdrawals+`}`+rate+`))`, "withdrawals")))
	b.WithPanel(b.ts(12, 8, "Consent tokens", "reqps",
		"Tokens issued, and tokens hosts introspected, per second.",
		q(`sum(rate(http_requests_total{`+issued+`}`+rate+`))`, "issued"),
		q(`sum(rate(http_requests_total{`+introspected+`}`+rate+`))`, "introspected")))
	b.WithPanel(b.ts(12, 8, "Token checks: consent_tokens cache", "reqps",
		"Lookups of the consent_tokens cache class (withdrawal deny-list, verified tokens, policy versions) when a token is checked: a hit saves a database read.",
		q(`sum(rate(cache_hits_total{class="consent_tokens"}`+rate+`))`, "hits"),
		q(`sum(rate(cache_misses_total{class="consent_tokens"}`+rate+`))`, "misses")))
	b.WithPanel(b.ts(12, 8, "Revocation stream connections", "reqps",
		"Hosts (re)connecting to GET /consent/v1/revocations, by status: a host that keeps reconnecting is losing its stream. The stream's lag at each host is not exported yet.",
		q(`sum by (status) (rate(http_requests_total{service="consent",route="/consent/v1/revocations"}`+rate+`))`, "{{status}}")))

	b.row("API health")
	b.WithPanel(b.ts(12, 8, "Errors by route", "reqps",
		"Consent API answers with a 4xx or 5xx, by route and status.",
		q(`sum by (route, status) (rate(http_requests_total{service="consent",status=~"4..|5.."}`+rate+`))`, "{{status}} {{route}}")))
	b.WithPanel(b.ts(12, 8, "P95 latency by route", "s",
		"95th percentile request time per route (the revocation stream left out: it stays open).",
		q(`histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{service="consent",route!="/consent/v1/revocations"}`+rate+`)))`, "{{route}}")))
	return b.Build()
}

func psi() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-psi", "fedrisk / PSI",
		"Private set intersection: jobs, elements and bytes exchanged per second, and how long intersections take (PSIPerformanceDegraded fires when the mean exceeds 10 s).")
	b.row("In the selected time range")
	b.WithPanel(b.stat(8, 5, "Intersections finished", "none",
		"Private set intersections that finished, as guest or as host.",
		q(`sum by (role) (increase(psi_intersection_duration_seconds_count[$__range]))`, "{{role}}")).
		GraphMode(common.BigValueGraphModeNone))
	b.WithPanel(b.stat(8, 5, "Jobs started (guest)", "none",
		"PSI jobs created on this guest (POST /psi/v1/jobs answered 2xx).",
		q(`sum(increase(http_requests_total{service="psi",method="POST",route="/psi/v1/jobs",status=~"2.."}[$__range]))`, "jobs")).
		GraphMode(common.BigValueGraphModeNone))
	b.WithPanel(b.stat(8, 5, "Sessions opened (host)", "none",
		"PSI sessions guests opened on this host (POST /psi/v1/peer/sessions answered 2xx).",
		q(`sum(increase(http_requests_total{service="psi",method="POST",route="/psi/v1/peer/sessions",status=~"2.."}[$__range]))`, "sessions")).
		GraphMode(common.BigValueGraphModeNone))

	b.row("Throughput")
	b.WithPanel(b.ts(12, 8, "Elements per second", "none",
		"Blinded points and tags exchanged with PSI peers, by role and direction (psi_items_total).",
		q(`sum by (role, direction) (rate(psi_items_total`+rate+`))`, "{{role}} {{direction}}")))
	b.WithPanel(b.ts(12, 8, "Bytes per second", "Bps",
		"PSI batch payload exchanged with peers, by role and direction (psi_bytes_total).",
		q(`sum by (role, direction) (rate(psi_bytes_total`+rate+`))`, "{{role}} {{direction}}")))

	b.row("Duration")
	b.WithPanel(b.ts(12, 8, "Mean intersection time (5 m)", "s",
		"What PSIPerformanceDegraded watches: mean duration of the intersections that finished in the last 5 minutes, by role (alert above 10 s, dashed line, for 3 minutes).",
		q(`sum by (role) (rate(psi_intersection_duration_seconds_sum[5m])) / sum by (role) (rate(psi_intersection_duration_seconds_count[5m]))`, "{{role}}")).
		Thresholds(steps("green", at(10, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(12, 8, "Intersection time P50 / P95", "s",
		"Percentiles of psi_intersection_duration_seconds by role.",
		q(`histogram_quantile(0.5, sum by (role, le) (rate(psi_intersection_duration_seconds_bucket`+rate+`)))`, "P50 {{role}}"),
		q(`histogram_quantile(0.95, sum by (role, le) (rate(psi_intersection_duration_seconds_bucket`+rate+`)))`, "P95 {{role}}")))
	b.WithPanel(b.ts(12, 8, "PSI API errors by route", "reqps",
		"PSI answers with a 4xx or 5xx, by route and status (client API and peer API).",
		q(`sum by (route, status) (rate(http_requests_total{service="psi",status=~"4..|5.."}`+rate+`))`, "{{status}} {{route}}")))
	b.WithPanel(b.ts(12, 8, "PSI result cache", "reqps",
		"Lookups of the psi_results cache class.",
		q(`sum(rate(cache_hits_total{class="psi_results"}`+rate+`))`, "hits"),
		q(`sum(rate(cache_misses_total{class="psi_results"}`+rate+`))`, "misses")))
	return b.Build()
}

func training() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-training", "fedrisk / Training",
		"Federated training jobs (run by model-serving): jobs by status, epochs, epoch duration and protocol traffic. Loss and AUC per epoch or tree are not exported as metrics yet.")
	b.row("Jobs")
	b.WithPanel(b.stat(8, 5, "Running", "none",
		"Training runs in progress, by role (training_jobs_running).",
		q(`sum by (role) (training_jobs_running)`, "{{role}}")))
	b.WithPanel(b.stat(16, 5, "Ended in the selected time range", "none",
		"Training jobs that ended, by role and status (succeeded, failed, cancelled).",
		q(`sum by (role, status) (increase(training_jobs_total[$__range]))`, "{{role}} {{status}}")).
		GraphMode(common.BigValueGraphModeNone))
	b.WithPanel(b.ts(12, 8, "Jobs ended per hour", "none",
		"Training jobs that ended in the last hour, by role and status.",
		q(`sum by (role, status) (increase(training_jobs_total[1h]))`, "{{role}} {{status}}")))
	b.WithPanel(b.ts(12, 8, "Training API requests", "reqps",
		"Requests to the training API and the training peer API, by route and status.",
		q(`sum by (route, status) (rate(http_requests_total{service="serving",route=~"/train/.*"}`+rate+`))`, "{{status}} {{route}}")))

	b.row("Epochs")
	b.WithPanel(b.ts(8, 8, "Epochs per minute", "none",
		"Finished epochs per minute, by role.",
		q(`sum by (role) (rate(training_epoch_duration_seconds_count`+rate+`)) * 60`, "{{role}}")))
	b.WithPanel(b.ts(8, 8, "Epoch duration P50 / P95", "s",
		"Wall time of finished epochs (batches and validation), by role.",
		q(`histogram_quantile(0.5, sum by (role, le) (rate(training_epoch_duration_seconds_bucket`+rate+`)))`, "P50 {{role}}"),
		q(`histogram_quantile(0.95, sum by (role, le) (rate(training_epoch_duration_seconds_bucket`+rate+`)))`, "P95 {{role}}")))
	b.WithPanel(b.ts(8, 8, "Protocol traffic", "Bps",
		"Encoded training messages exchanged with peers, by direction (training_bytes_total).",
		q(`sum by (direction) (rate(training_bytes_total`+rate+`))`, "{{direction}}")))
	return b.Build()
}

func scoring() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-scoring", "fedrisk / Scoring",
		"Online scoring: objectives and burn rates, latency, outcomes and degraded scores, partial-score calls per partner, and stable against canary. Host-side partial scores at the bottom.")
	byTrack := func(expr string) string {
		return expr + ` * on (job, instance) group_left (version) model_serving_info`
	}

	b.row("Objectives (slo_rules.yml)")
	b.WithPanel(b.stat(6, 5, "Failed scores, last hour", "percentunit",
		"Share of scoring requests answered with a 5xx over the last hour. Objective: at most 0.1% over 30 days.",
		q(`scoring:request_errors:ratio_rate1h`, "{{job}}")).
		Decimals(3).
		Thresholds(steps("green", at(0.001, "orange"), at(0.0144, "red"))))
	b.WithPanel(b.stat(6, 5, "Scores slower than 50 ms, last hour", "percentunit",
		"Share of scoring requests that took longer than 50 ms over the last hour. Objective: at most 1% over 30 days.",
		q(`scoring:request_slow:ratio_rate1h`, "{{job}}")).
		Decimals(2).
		Thresholds(steps("green", at(0.01, "orange"), at(0.144, "red"))))
	b.WithPanel(b.ts(6, 5, "Availability burn rate", "none",
		"Error ratio divided by the 0.1% budget, per window. 14.4 on 1 h (with 5 m) or 6 on 6 h (with 30 m) pages; 3 on 1 d or 1 on 3 d warns.",
		q(`scoring:request_errors:ratio_rate1h / 0.001`, "1h {{job}}"),
		q(`scoring:request_errors:ratio_rate6h / 0.001`, "6h {{job}}"),
		q(`scoring:request_errors:ratio_rate1d / 0.001`, "1d {{job}}"),
		q(`scoring:request_errors:ratio_rate3d / 0.001`, "3d {{job}}")).
		Thresholds(steps("green", at(1, "orange"), at(6, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(6, 5, "Latency burn rate", "none",
		"Slow ratio divided by the 1% budget, per window; same thresholds as availability.",
		q(`scoring:request_slow:ratio_rate1h / 0.01`, "1h {{job}}"),
		q(`scoring:request_slow:ratio_rate6h / 0.01`, "6h {{job}}"),
		q(`scoring:request_slow:ratio_rate1d / 0.01`, "1d {{job}}"),
		q(`scoring:request_slow:ratio_rate3d / 0.01`, "3d {{job}}")).
		Thresholds(steps("green", at(1, "orange"), at(6, "red"))).
		ThresholdsStyle(line()))

	b.row("Latency")
	b.WithPanel(b.ts(12, 8, "Score latency P50 / P95 / P99", "s",
		"Request time of POST /score and /score/v1/score at the guest; the latency objective is 50 ms (dashed line).",
		q(`histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{`+scoreRoutes+`}`+rate+`)))`, "P50"),
		q(`histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{`+scoreRoutes+`}`+rate+`)))`, "P95"),
		q(`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{`+scoreRoutes+`}`+rate+`)))`, "P99")).
		Thresholds(steps("green", at(0.05, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(12, 8, "Inference time by model version", "s",
		"model_inference_duration_seconds: on a guest the whole federated score, on a host one partial score. ModelInferenceSlowdown fires when the 5-minute mean exceeds 1 s.",
		q(`histogram_quantile(0.95, sum by (model, version, le) (rate(model_inference_duration_seconds_bucket`+rate+`)))`, "P95 {{model}} {{version}}"),
		q(`sum by (model, version) (rate(model_inference_duration_seconds_sum[5m])) / sum by (model, version) (rate(model_inference_duration_seconds_count[5m]))`, "mean {{model}} {{version}}")))

	b.row("Outcomes")
	b.WithPanel(b.ts(12, 8, "Scores by outcome", "reqps",
		"Scores answered by the guest: scored, degraded (a partner missing), refused (consent or budget), failed.",
		q(`sum by (outcome) (rate(scoring_requests_total`+rate+`))`, "{{outcome}}")))
	b.WithPanel(b.ts(12, 8, "Degraded ratio", "percentunit",
		"Share of scores computed without every partner's partial score.",
		q(`sum(rate(scoring_requests_total{outcome="degraded"}`+rate+`)) / sum(rate(scoring_requests_total`+rate+`))`, "degraded")).
		Min(0))

	b.row("Partners")
	b.WithPanel(b.ts(8, 8, "Partial-score calls per host", "reqps",
		"The guest's partial-score calls to each host per second.",
		q(`sum by (host) (rate(scoring_host_call_duration_seconds_count`+rate+`))`, "{{host}}")))
	b.WithPanel(b.ts(8, 8, "Partial-score call P95 per host", "s",
		"95th percentile duration of the guest's calls to each host.",
		q(`histogram_quantile(0.95, sum by (host, le) (rate(scoring_host_call_duration_seconds_bucket`+rate+`)))`, "{{host}}")))
	b.WithPanel(b.ts(8, 8, "Missing partials per host", "reqps",
		"Partials missing from scores, by host and reason code (scoring_host_failures_total).",
		q(`sum by (host, code) (rate(scoring_host_failures_total`+rate+`))`, "{{host}} {{code}}")))

	b.row("Stable and canary")
	b.WithPanel(b.ts(8, 8, "Score requests by release track", "reqps",
		"Scoring requests per second by the release track (VERSION: stable or canary) of the instance that answered, from model_serving_info.",
		q(`sum by (version) (`+byTrack(`rate(http_requests_total{`+scoreRoutes+`}`+rate+`)`)+`)`, "{{version}}")))
	b.WithPanel(b.ts(8, 8, "5xx ratio by release track", "percentunit",
		"The canary rollout aborts above 5% (dashed line).",
		q(`sum by (version) (`+byTrack(`rate(http_requests_total{`+scoreRoutes+`,status=~"5.."}`+rate+`)`)+`) / sum by (version) (`+byTrack(`rate(http_requests_total{`+scoreRoutes+`}`+rate+`)`)+`)`, "{{version}}")).
		Min(0).
		Thresholds(steps("green", at(0.05, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "P95 by release track", "s",
		"The canary rollout aborts above 1 s (dashed line).",
		q(`histogram_quantile(0.95, sum by (version, le) (`+byTrack(`rate(http_request_duration_seconds_bucket{`+scoreRoutes+`}`+rate+`)`)+`))`, "{{version}}")).
		Thresholds(steps("green", at(1, "red"))).
		ThresholdsStyle(line()))

	b.row("Host side")
	b.WithPanel(b.ts(12, 8, "Partial scores answered by outcome", "reqps",
		"On a host: partial scores asked of it, by outcome: released (fresh, charged to the budget), cached, withheld, refused, failed.",
		q(`sum by (outcome) (rate(scoring_partials_total`+rate+`))`, "{{outcome}}")))
	b.WithPanel(b.ts(12, 8, "Feature store reads by status", "reqps",
		"Entity lookups of the online feature store by view and status (hit: cache, miss: database).",
		q(`sum by (view, status) (rate(feature_store_reads_total`+rate+`))`, "{{view}} {{status}}")))
	return b.Build()
}

func privacy() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-privacy", "fedrisk / Privacy",
		"Differential-privacy budgets on the hosts: the lowest remaining budget per purpose, subjects below 20%, and releases. fedrisk exports the minimum and the count below 20% per (host, purpose), not the whole distribution over subjects. Replicas of one host share its ledger, so per-purpose figures are taken as max/min over instances, not summed.")
	b.row("Budgets")
	b.WithPanel(b.stat(12, 6, "Lowest remaining budget", "percentunit",
		"privacy_budget_remaining: the smallest remaining fraction of any subject's budget in the current window, per host and purpose. PrivacyBudgetLow fires below 20%.",
		q(`min by (host, purpose) (privacy_budget_remaining)`, "{{host}} {{purpose}}")).
		Min(0).Max(1).
		Thresholds(steps("red", at(0.2, "orange"), at(0.5, "green"))).
		ColorMode(common.BigValueColorModeBackground))
	b.WithPanel(b.stat(12, 6, "Subjects below 20%", "none",
		"privacy_budget_low_subjects: subjects whose budget in the current window has less than 20% left, per host and purpose.",
		q(`max by (host, purpose) (privacy_budget_low_subjects)`, "{{host}} {{purpose}}")).
		Thresholds(steps("green", at(1, "orange"))))
	b.WithPanel(b.ts(12, 8, "Lowest remaining budget over time", "percentunit",
		"The same minimum over time; the dashed line is PrivacyBudgetLow's 20%.",
		q(`min by (host, purpose) (privacy_budget_remaining)`, "{{host}} {{purpose}}")).
		Min(0).Max(1).
		Thresholds(steps("red", at(0.2, "green"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(12, 8, "Subjects below 20% over time", "none",
		"How many subjects are close to their budget: one or a few means repeated scoring of the same applicants; many, a budget too small for the traffic.",
		q(`max by (host, purpose) (privacy_budget_low_subjects)`, "{{host}} {{purpose}}")).
		Min(0))

	b.row("Releases")
	b.WithPanel(b.ts(12, 8, "Releases by outcome (host)", "reqps",
		"Partial scores a host answered: released (fresh, noised, charged), cached (a repeat, free), withheld or refused (budget spent, per the purpose's exhaustion policy), failed.",
		q(`sum by (outcome) (rate(scoring_partials_total`+rate+`))`, "{{outcome}}")))
	b.WithPanel(b.ts(12, 8, "Scores refused (guest)", "reqps",
		"Scores the guest refused (no consent, or a partner's budget spent), beside all scores.",
		q(`sum(rate(scoring_requests_total{outcome="refused"}`+rate+`))`, "refused"),
		q(`sum(rate(scoring_requests_total`+rate+`))`, "all")))
	return b.Build()
}

func infrastructure() (dashboard.Dashboard, error) {
	b := newBoard("fedrisk-infrastructure", "fedrisk / Infrastructure",
		"The machines (node-exporter), PostgreSQL (postgres-exporter), Redis (redis-exporter) and the fedrisk processes themselves.")
	b.row("Machines (node-exporter)")
	b.WithPanel(b.ts(8, 8, "CPU busy", "percent",
		"What HighCPUUsage watches: share of CPU time not idle, per instance (alert above 80% for 5 minutes).",
		q(`100 - (avg by (instance) (irate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)`, "{{instance}}")).
		Min(0).Max(100).
		Thresholds(steps("green", at(80, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "Memory used", "percent",
		"What HighMemoryUsage watches: memory not available, per instance (alert above 85% for 5 minutes).",
		q(`(1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)) * 100`, "{{instance}}")).
		Min(0).Max(100).
		Thresholds(steps("green", at(85, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "Filesystems used", "percent",
		"What DiskSpaceLow watches, per instance and mountpoint (alert above 85% for 5 minutes); in-memory and image filesystems left out.",
		q(`(1 - (node_filesystem_avail_bytes{fstype!~"tmpfs|squashfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|squashfs|overlay"})) * 100`, "{{instance}} {{mountpoint}}")).
		Min(0).Max(100).
		Thresholds(steps("green", at(85, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "Load average", "none",
		"1, 5 and 15 minute load averages per instance.",
		q(`node_load1`, "1m {{instance}}"),
		q(`node_load5`, "5m {{instance}}"),
		q(`node_load15`, "15m {{instance}}")))
	b.WithPanel(b.ts(8, 8, "Network", "Bps",
		"Bytes received and sent per second, per instance and interface (loopback left out).",
		q(`sum by (instance, device) (rate(node_network_receive_bytes_total{device!="lo"}`+rate+`))`, "in {{instance}} {{device}}"),
		q(`sum by (instance, device) (rate(node_network_transmit_bytes_total{device!="lo"}`+rate+`))`, "out {{instance}} {{device}}")))
	b.WithPanel(b.ts(8, 8, "Disk", "Bps",
		"Bytes read and written per second, per instance and device.",
		q(`sum by (instance, device) (rate(node_disk_read_bytes_total`+rate+`))`, "read {{instance}} {{device}}"),
		q(`sum by (instance, device) (rate(node_disk_written_bytes_total`+rate+`))`, "written {{instance}} {{device}}")))

	b.row("PostgreSQL (postgres-exporter)")
	b.WithPanel(b.stat(4, 8, "PostgreSQL", "none",
		"pg_up: the exporter reached PostgreSQL at its last scrape.",
		q(`pg_up`, "{{instance}}")).
		Mappings(upDown()).
		Thresholds(steps("red", at(1, "green"))).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone))
	b.WithPanel(b.ts(10, 8, "Connections", "none",
		"What DatabaseConnectionHigh watches: connections per server (alert above 80 for 2 minutes), beside max_connections, and by state.",
		q(`sum without (datname, state) (pg_stat_activity_count)`, "all {{instance}}"),
		q(`pg_settings_max_connections`, "max_connections {{instance}}"),
		q(`sum by (instance, state) (pg_stat_activity_count)`, "{{state}} {{instance}}")).
		Thresholds(steps("green", at(80, "red"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(10, 8, "Transactions", "ops",
		"Commits and rollbacks per second per database.",
		q(`sum by (instance, datname) (rate(pg_stat_database_xact_commit{datname!=""}`+rate+`))`, "commit {{datname}}"),
		q(`sum by (instance, datname) (rate(pg_stat_database_xact_rollback{datname!=""}`+rate+`))`, "rollback {{datname}}")))
	b.WithPanel(b.ts(8, 8, "Buffer cache hit ratio", "percentunit",
		"Blocks found in PostgreSQL's buffer cache, per database.",
		q(`sum by (instance, datname) (rate(pg_stat_database_blks_hit{datname!=""}`+rate+`)) / (sum by (instance, datname) (rate(pg_stat_database_blks_hit{datname!=""}`+rate+`)) + sum by (instance, datname) (rate(pg_stat_database_blks_read{datname!=""}`+rate+`)))`, "{{datname}}")).
		Min(0).Max(1))
	b.WithPanel(b.ts(8, 8, "Longest transaction and deadlocks", "s",
		"The oldest open transaction per database and state (long ones hold locks and bloat tables), and deadlocks per second.",
		q(`max by (instance, datname, state) (pg_stat_activity_max_tx_duration)`, "{{datname}} {{state}}"),
		q(`sum by (instance, datname) (rate(pg_stat_database_deadlocks{datname!=""}`+rate+`))`, "deadlocks/s {{datname}}")))
	b.WithPanel(b.ts(8, 8, "Database size", "bytes",
		"Size of each database.",
		q(`pg_database_size_bytes`, "{{datname}} {{instance}}")))

	b.row("Redis (redis-exporter)")
	b.WithPanel(b.stat(4, 8, "Redis", "none",
		"redis_up: the exporter reached Redis at its last scrape.",
		q(`redis_up`, "{{instance}}")).
		Mappings(upDown()).
		Thresholds(steps("red", at(1, "green"))).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone))
	b.WithPanel(b.ts(10, 8, "Memory", "bytes",
		"Memory used beside maxmemory (0: no limit). The runbook's cache policy warns above 90% of maxmemory.",
		q(`redis_memory_used_bytes`, "used {{instance}}"),
		q(`redis_memory_max_bytes`, "maxmemory {{instance}}")))
	b.WithPanel(b.ts(10, 8, "Keyspace hit ratio", "percentunit",
		"Key lookups that found a key. The runbook's cache policy acts below 80%.",
		q(`rate(redis_keyspace_hits_total`+rate+`) / (rate(redis_keyspace_hits_total`+rate+`) + rate(redis_keyspace_misses_total`+rate+`))`, "{{instance}}")).
		Min(0).Max(1).
		Thresholds(steps("red", at(0.8, "green"))).
		ThresholdsStyle(line()))
	b.WithPanel(b.ts(8, 8, "Clients", "none",
		"Connected and blocked clients.",
		q(`redis_connected_clients`, "connected {{instance}}"),
		q(`redis_blocked_clients`, "blocked {{instance}}")))
	b.WithPanel(b.ts(8, 8, "Commands and evictions", "ops",
		"Commands processed, keys evicted (memory full) and keys expired (TTL) per second.",
		q(`rate(redis_commands_processed_total`+rate+`)`, "commands {{instance}}"),
		q(`rate(redis_evicted_keys_total`+rate+`)`, "evicted {{instance}}"),
		q(`rate(redis_expired_keys_total`+rate+`)`, "expired {{instance}}")))
	b.WithPanel(b.ts(8, 8, "Keys", "none",
		"Keys per database.",
		q(`redis_db_keys`, "{{db}} {{instance}}")))

	b.row("fedrisk processes")
	b.WithPanel(b.ts(8, 8, "Resident memory", "bytes",
		"Resident memory and Go heap in use of each fedrisk process.",
		q(`max by (instance) (process_resident_memory_bytes{job!~".*-exporter"})`, "RSS {{instance}}"),
		q(`max by (instance) (go_memstats_heap_inuse_bytes{job!~".*-exporter"})`, "heap {{instance}}")))
	b.WithPanel(b.ts(8, 8, "CPU", "percentunit",
		"CPU seconds per second of each fedrisk process (1 = one core).",
		q(`max by (instance) (rate(process_cpu_seconds_total{job!~".*-exporter"}`+rate+`))`, "{{instance}}")))
	b.WithPanel(b.ts(8, 8, "Goroutines", "none",
		"Goroutines of each fedrisk process.",
		q(`max by (instance) (go_goroutines{job!~".*-exporter"})`, "{{instance}}")))
	b.WithPanel(b.ts(12, 8, "Cache hit ratio by class", "percentunit",
		"fedrisk's cache lookups that hit, per key class (user_features, model_cache, psi_results, consent_tokens).",
		q(`sum by (class) (rate(cache_hits_total`+rate+`)) / (sum by (class) (rate(cache_hits_total`+rate+`)) + sum by (class) (rate(cache_misses_total`+rate+`)))`, "{{class}}")).
		Min(0).Max(1))
	b.WithPanel(b.ts(12, 8, "Cache evictions by class", "ops",
		"Entries evicted for capacity or expired, per key class.",
		q(`sum by (class) (rate(cache_evictions_total`+rate+`))`, "{{class}}")))
	return b.Build()
}
