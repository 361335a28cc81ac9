package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// TestBenchScoreCLI runs a short `fedrisk bench score --json` (on
// PostgreSQL and Redis when the test variables name them) and checks the
// JSON object: every request scored, the required fields present, and the
// run's PostgreSQL schemas dropped afterwards.
func TestBenchScoreCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the demo federation")
	}
	pg := os.Getenv(sqldbtest.PostgresEnv)
	rd := os.Getenv("FEDRISK_TEST_REDIS_URL")
	code, out, stderr := runCLI(t, nil, "bench", "score", "--json", "--rate", "50", "--duration", "1s", "--warmup", "500ms",
		"--customers", "1000", "--max-rps=false", "--postgres", pg, "--redis", rd)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("want one JSON line, got:\n%s", out)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(out), &fields); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"rate", "duration_seconds", "success_ratio", "p50_ms", "p95_ms", "p99_ms", "max_rps",
		"storage", "cores", "customers", "degraded_ratio", "throughput", "status_codes"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	var res ScoreBenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.SuccessRatio != 1 || res.Requests == 0 || res.StatusCodes["200"] != int(res.Requests) {
		t.Errorf("success ratio %v over %d requests, status codes %v, errors %v", res.SuccessRatio, res.Requests, res.StatusCodes, res.Errors)
	}
	if res.Rate != 50 || res.DurationSeconds <= 0 || res.Subjects == 0 || res.Customers != 1000 {
		t.Errorf("result: %+v", res)
	}
	if !(res.P50Ms > 0 && res.P50Ms <= res.P95Ms && res.P95Ms <= res.P99Ms && res.P99Ms <= res.MaxMs) {
		t.Errorf("latencies out of order: p50 %v p95 %v p99 %v max %v", res.P50Ms, res.P95Ms, res.P99Ms, res.MaxMs)
	}
	if res.DegradedRatio != 0 {
		t.Errorf("degraded ratio %v: the partner answered without noise budget or not at all", res.DegradedRatio)
	}
	if res.MaxRPS != 0 || len(res.Saturation) != 0 {
		t.Errorf("the ramp ran with --max-rps=false: %+v", res.Saturation)
	}
	if res.Inference == nil || res.Inference.Count < float64(res.Requests) {
		t.Errorf("model_inference_duration_seconds over the phase: %+v, want at least %d observations", res.Inference, res.Requests)
	}
	wantStorage := map[bool]string{true: "postgresql", false: "sqlite"}[pg != ""] + "+" + map[bool]string{true: "redis", false: "memory"}[rd != ""]
	if res.Storage != wantStorage {
		t.Errorf("storage %q, want %q", res.Storage, wantStorage)
	}
	if pg == "" {
		return
	}
	if !strings.HasPrefix(res.Schema, "fedrisk_bench_") {
		t.Fatalf("schema %q", res.Schema)
	}
	ctx := context.Background()
	db, err := sqldb.Open(ctx, pg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name IN (?, ?)`),
		res.Schema+"_bank", res.Schema+"_partner").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of the run's schemas (%s_*) left behind", n, res.Schema)
	}
}

func TestBenchScoreUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "-1"}, "--rate must be"},
		{[]string{"--duration", "0s"}, "--duration must be"},
		{[]string{"--customers", "10"}, "--customers must be"},
		{[]string{"--ramp", "2000,1000"}, "--ramp must be increasing"},
		{[]string{"--ramp", "1000,x"}, "--ramp must be increasing"},
		{[]string{"--consent", "cookie"}, "--consent must be id or token"},
		{[]string{"--workers", "0"}, "--workers must be"},
		{[]string{"--rate", "lots"}, "invalid argument"},
		{[]string{"extra"}, "unknown command"},
	} {
		code, out, stderr := runCLI(t, nil, append([]string{"bench", "score"}, tt.args...)...)
		if code != exitBadUsage || !strings.Contains(stderr, tt.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, stderr, tt.want)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: want one clear line, got:\n%s", tt.args, stderr)
		}
	}
}
