package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/demo"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// ScoreBenchResult is what `fedrisk bench score --json` prints: the
// fixed-rate phase's figures, the saturation ramp and the setup.
type ScoreBenchResult struct {
	Storage   string `json:"storage"` // "postgresql+redis", "sqlite+memory", ...
	Schema    string `json:"schema,omitempty"`
	Cores     int    `json:"cores"`
	Customers int    `json:"customers"`
	Subjects  int    `json:"subjects"` // distinct subjects the requests cycle over
	Consent   string `json:"consent"`  // consent_id or consent_token in the bodies
	Noise     string `json:"noise"`

	Rate            int            `json:"rate"`
	DurationSeconds float64        `json:"duration_seconds"`
	Requests        uint64         `json:"requests"`
	SuccessRatio    float64        `json:"success_ratio"`
	P50Ms           float64        `json:"p50_ms"`
	P95Ms           float64        `json:"p95_ms"`
	P99Ms           float64        `json:"p99_ms"`
	MeanMs          float64        `json:"mean_ms"`
	MaxMs           float64        `json:"max_ms"`
	Throughput      float64        `json:"throughput"`
	StatusCodes     map[string]int `json:"status_codes"`
	ErrorCodes      map[string]int `json:"error_codes,omitempty"`
	Errors          []string       `json:"errors,omitempty"`
	DegradedRatio   float64        `json:"degraded_ratio"`

	// MaxRPS is the highest rate — the fixed-rate phase's or a ramp
	// step's — that passed SaturationRule (0 when the ramp was skipped or
	// nothing passed).
	MaxRPS         int             `json:"max_rps"`
	PeakThroughput float64         `json:"peak_throughput"`
	SaturationRule string          `json:"saturation_rule"`
	Saturation     []ScoreBenchRun `json:"saturation,omitempty"`

	// Inference is the guest's model_inference_duration_seconds over the
	// fixed-rate phase (the difference of two /metrics scrapes).
	Inference *InferenceSummary `json:"model_inference,omitempty"`
	// Outcomes are the guest's scoring_requests_total and the host's
	// scoring_partials_total over the fixed-rate phase, by outcome.
	GuestOutcomes map[string]float64 `json:"guest_outcomes,omitempty"`
	HostPartials  map[string]float64 `json:"host_partials,omitempty"`

	SetupSeconds float64 `json:"setup_seconds"`
}

// ScoreBenchRun is one step of the saturation ramp.
type ScoreBenchRun struct {
	Rate         int     `json:"rate"`
	Requests     uint64  `json:"requests"`
	Throughput   float64 `json:"throughput"`
	SuccessRatio float64 `json:"success_ratio"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	Passed       bool    `json:"passed"`
}

// InferenceSummary summarises a histogram's increase: count, mean and
// quantiles interpolated within its buckets.
type InferenceSummary struct {
	Count  float64 `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// scoreBenchOpts are the command's flags.
type scoreBenchOpts struct {
	postgres, redis string
	customers       int
	rate            int
	duration        time.Duration
	warmup          time.Duration
	warmupRate      int
	maxRPS          bool
	ramp            string
	rampRates       []int
	step            time.Duration
	p99Limit        time.Duration
	workers         uint64
	timeout         time.Duration
	consent         string
	noise           string
	keep            bool
	cpuProfile      string
}

// Saturation thresholds (documented in the command's help).
const (
	satMinSuccess    = 0.99
	satMinThroughput = 0.95 // of the step's rate
)

func newBenchScoreCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	var (
		o      scoreBenchOpts
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "score",
		Short: "Drive the guest's POST /score at fixed rates over loopback mutual TLS and measure latency and throughput",
		Long: `Starts the demo federation in this process — a bank (guest) and a partner (host)
node on 127.0.0.1 with development certificates and mutual TLS — on a fresh
temporary directory: loads --customers rows of the bundled data, records consents,
runs PSI, trains and promotes the model (the partner adds Laplace noise; a repeated
score of the same subject reuses its release and costs no privacy budget). With
--postgres and --redis (or FEDRISK_BENCH_POSTGRES_URL / FEDRISK_BENCH_REDIS_URL)
both nodes run on those servers, each in a schema fedrisk_bench_<time>_<party>
that is dropped at the end; without them on SQLite and in-memory caches.

Then it sends POST /score bodies {"subject", "consent_id"} (or, with --consent
token, pre-issued "consent_token"s) cycling over the sampled consented subjects
the partner also has, with vegeta:

  1. warm-up: --warmup at --warmup-rate requests/s (not reported);
  2. fixed rate: --rate requests/s for --duration: success ratio, latency
     percentiles, throughput, status codes, share of degraded scores, and the
     guest's model_inference_duration_seconds over the phase (from /metrics);
  3. saturation (unless --max-rps=false): the rates of --ramp for --step each,
     in order, stopping at the first that fails. max_rps is the highest rate
     (of the fixed-rate phase and the ramp) with success ratio >= 0.99, p99 <= --p99-limit (100ms) and throughput >=
     95% of the rate.

Every phase uses at most --workers concurrent requests. The attacker, the guest
and the host share this machine's cores.`,
		Example: `  fedrisk bench score
  fedrisk bench score --json --postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --redis redis://127.0.0.1:6379/0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return &usageError{err}
			}
			progress := stderr
			if asJSON {
				progress = io.Discard
			}
			res, err := benchScore(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(res)
			}
			printScoreBench(stdout, res)
			return nil
		},
	}
	pg, _ := lookup("FEDRISK_BENCH_POSTGRES_URL")
	rd, _ := lookup("FEDRISK_BENCH_REDIS_URL")
	fs := cmd.Flags()
	fs.StringVar(&o.postgres, "postgres", pg, "run both nodes on this PostgreSQL database (env FEDRISK_BENCH_POSTGRES_URL; empty: SQLite)")
	fs.StringVar(&o.redis, "redis", rd, "use this Redis as both nodes' cache (env FEDRISK_BENCH_REDIS_URL; empty: in-memory)")
	fs.IntVar(&o.customers, "customers", 2000, "rows of the bundled data to load (200..30000)")
	fs.IntVar(&o.rate, "rate", 500, "requests per second of the fixed-rate phase")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of the fixed-rate phase")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "length of the warm-up (0: none)")
	fs.IntVar(&o.warmupRate, "warmup-rate", 100, "requests per second of the warm-up")
	fs.BoolVar(&o.maxRPS, "max-rps", true, "run the saturation ramp")
	fs.StringVar(&o.ramp, "ramp", "750,1000,1500,2000,2500,3000,4000", "increasing rates of the saturation ramp, comma-separated")
	fs.DurationVar(&o.step, "step", 3*time.Second, "length of each ramp step")
	fs.DurationVar(&o.p99Limit, "p99-limit", 100*time.Millisecond, "largest p99 latency a passing ramp step may have")
	fs.Uint64Var(&o.workers, "workers", 512, "most concurrent requests")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.StringVar(&o.consent, "consent", "id", "what the bodies carry: id (consent_id; the guest issues a token per request) or token (a pre-issued consent_token)")
	fs.StringVar(&o.noise, "noise", "laplace", "noise on the partner's released scores: laplace, gaussian or none")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (attacker, guest and host) during the fixed-rate phase to this file")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (logs, databases) and the PostgreSQL schemas")
	return cmd
}

func (o *scoreBenchOpts) validate() error {
	switch {
	case o.rate < 1 || o.rate > 100_000:
		return fmt.Errorf("--rate must be 1..100000 requests per second")
	case o.duration < 100*time.Millisecond || o.duration > time.Hour:
		return fmt.Errorf("--duration must be 100ms..1h")
	case o.warmup < 0 || o.warmup > 10*time.Minute:
		return fmt.Errorf("--warmup must be 0..10m")
	case o.warmupRate < 1 || o.warmupRate > 100_000:
		return fmt.Errorf("--warmup-rate must be 1..100000")
	case o.customers < 200 || o.customers > 30_000:
		return fmt.Errorf("--customers must be 200..30000")
	case o.step < 500*time.Millisecond || o.step > 10*time.Minute:
		return fmt.Errorf("--step must be 500ms..10m")
	case o.p99Limit <= 0:
		return fmt.Errorf("--p99-limit must be positive")
	case o.workers < 1 || o.workers > 100_000:
		return fmt.Errorf("--workers must be 1..100000")
	case o.timeout < 10*time.Millisecond || o.timeout > time.Minute:
		return fmt.Errorf("--timeout must be 10ms..1m")
	case o.consent != "id" && o.consent != "token":
		return fmt.Errorf("--consent must be id or token")
	case o.noise != "laplace" && o.noise != "gaussian" && o.noise != "none":
		return fmt.Errorf("--noise must be laplace, gaussian or none")
	}
	o.rampRates = nil
	if o.maxRPS {
		prev := 0
		for _, f := range strings.Split(o.ramp, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || r < 1 || r > 100_000 || r <= prev {
				return fmt.Errorf("--ramp must be increasing rates of 1..100000 separated by commas, got %q", o.ramp)
			}
			o.rampRates = append(o.rampRates, r)
			prev = r
		}
	}
	return nil
}

// storageName names the backends a run uses.
func (o scoreBenchOpts) storageName() string {
	db, c := "sqlite", "memory"
	if o.postgres != "" {
		db = "postgresql"
	}
	if o.redis != "" {
		c = "redis"
	}
	return db + "+" + c
}

func benchScore(ctx context.Context, o scoreBenchOpts, progress io.Writer) (res ScoreBenchResult, err error) {
	res = ScoreBenchResult{Storage: o.storageName(), Cores: runtime.GOMAXPROCS(0), Customers: o.customers,
		Consent: "consent_" + o.consent, Noise: o.noise, Rate: o.rate}
	if o.postgres == "" || o.redis == "" {
		fmt.Fprintf(progress, "note: running on %s, not PostgreSQL + Redis (set --postgres and --redis for the production setup)\n", res.Storage)
	}
	dir, err := os.MkdirTemp("", "fedrisk-bench-score-")
	if err != nil {
		return res, err
	}
	if o.keep {
		fmt.Fprintln(progress, "working directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	schema := fmt.Sprintf("fedrisk_bench_%d", time.Now().UnixNano())
	if o.postgres != "" {
		res.Schema = schema
		if !o.keep {
			defer func() {
				if derr := dropBenchSchemas(context.WithoutCancel(ctx), o.postgres, schema); derr != nil {
					err = errors.Join(err, derr)
				}
			}()
		}
	}

	fmt.Fprintf(progress, "setting up the federation (%d customers, %s)\n", o.customers, res.Storage)
	t0 := time.Now()
	d, err := demo.Start(ctx, demo.Options{Dir: dir, PostgresURL: o.postgres, RedisURL: o.redis, Schema: schema,
		Customers: o.customers, Missing: 0.05, Withdrawn: 0.03, Noise: o.noise, Samples: 40, Out: progress})
	if err != nil {
		return res, fmt.Errorf("bench score: setup: %w (working directory %s)", err, dir)
	}
	defer func() {
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	res.SetupSeconds = time.Since(t0).Seconds()

	guest := d.Guest.Clients[config.ServiceServing]
	tr, ok := guest.HTTP.Transport.(*http.Transport)
	if !ok || tr.TLSClientConfig == nil {
		return res, fmt.Errorf("bench score: the guest's client has no TLS configuration")
	}
	tlsConf := tr.TLSClientConfig.Clone()

	bodies, err := scoreBodies(ctx, d, o.consent, progress)
	if err != nil {
		return res, err
	}
	res.Subjects = len(bodies)
	targeter := cycleTargeter(guest.Base+"/score", bodies)
	attack := func(rate int, du time.Duration, name string, keep func(*vegeta.Result)) vegeta.Metrics {
		a := vegeta.NewAttacker(vegeta.TLSConfig(tlsConf.Clone()), vegeta.MaxWorkers(o.workers),
			vegeta.Timeout(o.timeout), vegeta.KeepAlive(true), vegeta.HTTP2(true), vegeta.Redirects(vegeta.NoFollow))
		var m vegeta.Metrics
		done := ctx.Done()
		for r := range a.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, du, name) {
			m.Add(r)
			if keep != nil {
				keep(r)
			}
			select {
			case <-done:
				a.Stop()
				done = nil
			default:
			}
		}
		m.Close()
		return m
	}

	if o.warmup > 0 {
		fmt.Fprintf(progress, "warm-up: %d requests/s for %s\n", o.warmupRate, o.warmup)
		attack(o.warmupRate, o.warmup, "warmup", nil)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	fmt.Fprintf(progress, "fixed rate: %d requests/s for %s\n", o.rate, o.duration)
	before := scrapeScoreMetrics(ctx, d)
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return res, err
	}
	var degraded, ok200 uint64
	errCodes := map[string]int{}
	m := attack(o.rate, o.duration, "fixed", func(r *vegeta.Result) {
		if r.Code == http.StatusOK {
			ok200++
			if bytes.Contains(r.Body, []byte(`"degraded":true`)) {
				degraded++
			}
		} else if r.Code != 0 {
			var e struct {
				Code string `json:"code"`
			}
			if json.Unmarshal(r.Body, &e) == nil && e.Code != "" {
				errCodes[e.Code]++
			}
		}
	})
	stopProfile()
	after := scrapeScoreMetrics(ctx, d)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.DurationSeconds = m.Duration.Seconds()
	res.Requests = m.Requests
	res.SuccessRatio = m.Success
	res.P50Ms, res.P95Ms, res.P99Ms = ms(m.Latencies.P50), ms(m.Latencies.P95), ms(m.Latencies.P99)
	res.MeanMs, res.MaxMs = ms(m.Latencies.Mean), ms(m.Latencies.Max)
	res.Throughput = m.Throughput
	res.StatusCodes = m.StatusCodes
	res.Errors = m.Errors
	if len(errCodes) > 0 {
		res.ErrorCodes = errCodes
	}
	if ok200 > 0 {
		res.DegradedRatio = float64(degraded) / float64(ok200)
	}
	res.Inference = after.inference.minus(before.inference)
	res.GuestOutcomes = diffCounters(after.guestOutcomes, before.guestOutcomes)
	res.HostPartials = diffCounters(after.hostPartials, before.hostPartials)

	res.SaturationRule = "skipped (--max-rps=false)"
	if o.maxRPS {
		res.SaturationRule = fmt.Sprintf("highest rate (the fixed-rate phase or a ramp step) with success_ratio >= %.2f, p99 <= %s and throughput >= %.0f%% of the rate, ramp steps of %s, at most %d concurrent requests",
			satMinSuccess, o.p99Limit, satMinThroughput*100, o.step, o.workers)
		if m.Success >= satMinSuccess && m.Latencies.P99 <= o.p99Limit && m.Throughput >= satMinThroughput*float64(o.rate) {
			res.MaxRPS = o.rate
		}
		for _, rate := range o.rampRates {
			fmt.Fprintf(progress, "saturation: %d requests/s for %s\n", rate, o.step)
			// Let the previous step's backlog drain.
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Second):
			}
			sm := attack(rate, o.step, "ramp", nil)
			run := ScoreBenchRun{Rate: rate, Requests: sm.Requests, Throughput: sm.Throughput, SuccessRatio: sm.Success,
				P50Ms: ms(sm.Latencies.P50), P99Ms: ms(sm.Latencies.P99)}
			run.Passed = sm.Success >= satMinSuccess && sm.Latencies.P99 <= o.p99Limit && sm.Throughput >= satMinThroughput*float64(rate)
			res.Saturation = append(res.Saturation, run)
			res.PeakThroughput = math.Max(res.PeakThroughput, sm.Throughput)
			if !run.Passed {
				break
			}
			res.MaxRPS = max(res.MaxRPS, rate)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// scoreBodies scores each sampled subject once and returns the request
// bodies of those scored in full: the one subject the demo drained of
// privacy budget (and any other that fails or comes back degraded) is left
// out, so the bench's requests never fail for budget reasons.
func scoreBodies(ctx context.Context, d *demo.Demo, mode string, progress io.Writer) ([][]byte, error) {
	guest := d.Guest.Clients[config.ServiceServing]
	consents := d.ActiveConsents()
	subjects := make([]string, 0, len(consents))
	for s := range consents {
		subjects = append(subjects, s)
	}
	sort.Strings(subjects)
	var bodies [][]byte
	left := 0
	for _, s := range subjects {
		body := servingapi.ScoreBody{Subject: s, ConsentID: consents[s]}
		if mode == "token" {
			var t struct {
				Token string `json:"token"`
			}
			if _, err := d.Guest.Clients[config.ServiceConsent].Do(ctx, http.MethodPost, "/consent/v1/consents/"+consents[s]+"/tokens", nil, &t); err != nil {
				return nil, fmt.Errorf("bench score: issue a consent token: %w", err)
			}
			body = servingapi.ScoreBody{Subject: s, ConsentToken: t.Token}
		}
		var out servingapi.ScoreAnswer
		if _, err := guest.Do(ctx, http.MethodPost, "/score", body, &out); err != nil || out.Degraded {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			left++
			continue
		}
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, b)
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("bench score: none of the %d sampled subjects could be scored (see the nodes' logs)", len(subjects))
	}
	fmt.Fprintf(progress, "%d subjects to score (%d left out: refused or degraded, e.g. the subject whose budget the demo drained)\n", len(bodies), left)
	return bodies, nil
}

// cycleTargeter returns POST url targets whose bodies cycle over bodies.
func cycleTargeter(url string, bodies [][]byte) vegeta.Targeter {
	var n atomic.Uint64
	hdr := http.Header{"Content-Type": []string{"application/json"}}
	return func(t *vegeta.Target) error {
		i := n.Add(1) - 1
		*t = vegeta.Target{Method: http.MethodPost, URL: url, Body: bodies[i%uint64(len(bodies))], Header: hdr}
		return nil
	}
}

// startCPUProfile starts writing a CPU profile to path ("": none) and
// returns the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench score: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench score: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// dropBenchSchemas drops the parties' schemas of a run.
func dropBenchSchemas(ctx context.Context, pgURL, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, pgURL, "")
	if err != nil {
		return fmt.Errorf("bench score: drop the schemas: %w", err)
	}
	defer db.Close()
	for _, p := range []string{"bank", "partner"} {
		// prefix is this command's own fedrisk_bench_<digits>.
		if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+prefix+"_"+p+` CASCADE`); err != nil {
			return fmt.Errorf("bench score: drop schema %s_%s: %w", prefix, p, err)
		}
	}
	return nil
}

// scoreMetrics are the figures read from the nodes' /metrics.
type scoreMetrics struct {
	inference                   histogram
	guestOutcomes, hostPartials map[string]float64
}

// histogram is a Prometheus histogram summed over its label sets.
type histogram struct {
	sum, count float64
	buckets    map[float64]float64 // cumulative count by upper bound
}

// scrapeScoreMetrics reads the guest's and the host's serving /metrics;
// a failed scrape leaves its figures empty.
func scrapeScoreMetrics(ctx context.Context, d *demo.Demo) scoreMetrics {
	out := scoreMetrics{inference: histogram{buckets: map[float64]float64{}},
		guestOutcomes: map[string]float64{}, hostPartials: map[string]float64{}}
	scrape := func(c *apiclient.Client, f func(name string, labels map[string]string, v float64)) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/metrics", nil)
		if err != nil {
			return
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		parsePromText(resp.Body, f)
	}
	scrape(d.Guest.Clients[config.ServiceServing], func(name string, l map[string]string, v float64) {
		switch name {
		case "model_inference_duration_seconds_sum":
			out.inference.sum += v
		case "model_inference_duration_seconds_count":
			out.inference.count += v
		case "model_inference_duration_seconds_bucket":
			if le, err := strconv.ParseFloat(l["le"], 64); err == nil {
				out.inference.buckets[le] += v
			}
		case "scoring_requests_total":
			out.guestOutcomes[l["outcome"]] += v
		}
	})
	scrape(d.Host.Clients[config.ServiceServing], func(name string, l map[string]string, v float64) {
		if name == "scoring_partials_total" {
			out.hostPartials[l["outcome"]] += v
		}
	})
	return out
}

// parsePromText calls f for each sample of a Prometheus text exposition.
func parsePromText(r io.Reader, f func(name string, labels map[string]string, v float64)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		labels := map[string]string{}
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
			for _, kv := range strings.Split(line[i+1:j], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
		} else if k := strings.IndexByte(line, ' '); k >= 0 {
			name, rest = line[:k], strings.TrimSpace(line[k+1:])
		}
		if fields := strings.Fields(rest); len(fields) > 0 {
			if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
				f(name, labels, v)
			}
		}
	}
}

// minus summarises the observations a histogram gained since before; nil
// when there are none.
func (h histogram) minus(before histogram) *InferenceSummary {
	n := h.count - before.count
	if n <= 0 {
		return nil
	}
	s := &InferenceSummary{Count: n, MeanMs: round3((h.sum - before.sum) / n * 1000)}
	bounds := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	q := func(p float64) float64 {
		want := p * n
		prevLe, prevC := 0.0, 0.0
		for _, le := range bounds {
			c := h.buckets[le] - before.buckets[le]
			if c >= want {
				if math.IsInf(le, 1) {
					return prevLe * 1000 // beyond the last finite bound
				}
				frac := 0.0
				if c > prevC {
					frac = (want - prevC) / (c - prevC)
				}
				return round3((prevLe + frac*(le-prevLe)) * 1000)
			}
			prevLe, prevC = le, c
		}
		return prevLe * 1000
	}
	s.P50Ms, s.P99Ms = q(0.50), q(0.99)
	return s
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// diffCounters returns after − before for each key with a change; nil
// when nothing changed.
func diffCounters(after, before map[string]float64) map[string]float64 {
	var out map[string]float64
	for k, v := range after {
		if dv := v - before[k]; dv != 0 {
			if out == nil {
				out = map[string]float64{}
			}
			out[k] = dv
		}
	}
	return out
}

func printScoreBench(w io.Writer, r ScoreBenchResult) {
	fmt.Fprintf(w, "POST /score, guest and host in this process over mutual TLS, %s, %d cores\n", r.Storage, r.Cores)
	if r.Storage != "postgresql+redis" {
		fmt.Fprintf(w, "note: not on PostgreSQL + Redis (use --postgres and --redis for the production setup)\n")
	}
	fmt.Fprintf(w, "%d customers, %d subjects cycled, bodies with %s, noise %s; setup %.1f s\n\n", r.Customers, r.Subjects, r.Consent, r.Noise, r.SetupSeconds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rate\t%d/s for %.1f s (%d requests)\n", r.Rate, r.DurationSeconds, r.Requests)
	fmt.Fprintf(tw, "success ratio\t%.4f\n", r.SuccessRatio)
	fmt.Fprintf(tw, "throughput\t%.1f/s\n", r.Throughput)
	fmt.Fprintf(tw, "latency ms\tp50 %.2f  p95 %.2f  p99 %.2f  mean %.2f  max %.2f\n", r.P50Ms, r.P95Ms, r.P99Ms, r.MeanMs, r.MaxMs)
	fmt.Fprintf(tw, "status codes\t%s\n", formatCounts(r.StatusCodes))
	if len(r.ErrorCodes) > 0 {
		fmt.Fprintf(tw, "error codes\t%s\n", formatCounts(r.ErrorCodes))
	}
	for i, e := range r.Errors {
		if i == 3 {
			fmt.Fprintf(tw, "\t(%d more)\n", len(r.Errors)-3)
			break
		}
		fmt.Fprintf(tw, "transport error\t%s\n", e)
	}
	fmt.Fprintf(tw, "degraded\t%.4f\n", r.DegradedRatio)
	if in := r.Inference; in != nil {
		fmt.Fprintf(tw, "guest model_inference\t%.0f observations, mean %.2f ms, p50 ~%.2f ms, p99 ~%.2f ms (from buckets)\n", in.Count, in.MeanMs, in.P50Ms, in.P99Ms)
	}
	if len(r.HostPartials) > 0 {
		keys := map[string]int{}
		for k, v := range r.HostPartials {
			keys[k] = int(v)
		}
		fmt.Fprintf(tw, "host partials\t%s\n", formatCounts(keys))
	}
	tw.Flush()
	if len(r.Saturation) == 0 {
		fmt.Fprintf(w, "\nsaturation: %s\n", r.SaturationRule)
		return
	}
	fmt.Fprintf(w, "\nsaturation: max_rps %d (peak throughput %.0f/s); rule: %s\n", r.MaxRPS, r.PeakThroughput, r.SaturationRule)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\trequests\tthroughput\tsuccess\tp50 ms\tp99 ms\tpassed\t")
	for _, s := range r.Saturation {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.4f\t%.2f\t%.2f\t%v\t\n", s.Rate, s.Requests, s.Throughput, s.SuccessRatio, s.P50Ms, s.P99Ms, s.Passed)
	}
	tw.Flush()
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
