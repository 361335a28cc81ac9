package monitoring_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedrisk/fedrisk/deploy/monitoring"
)

const (
	metricsFile   = "metrics.txt"
	exportersFile = "exporter_metrics.txt"
)

func readCatalogue(t *testing.T) *monitoring.Catalogue {
	t.Helper()
	cat, err := monitoring.ReadCatalogue(metricsFile, exportersFile)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// exporterRun says how to start an exporter on a loopback port.
type exporterRun struct {
	binaries []string                             // Debian's name first, upstream's second
	args     func(addr string) ([]string, string) // flags and the reason to skip ("" to run)
	env      func() []string
}

func exporterRuns() map[string]exporterRun {
	return map[string]exporterRun{
		"node-exporter": {
			binaries: []string{"prometheus-node-exporter", "node_exporter"},
			args: func(addr string) ([]string, string) {
				return []string{"--web.listen-address=" + addr}, ""
			},
		},
		"postgres-exporter": {
			binaries: []string{"prometheus-postgres-exporter", "postgres_exporter"},
			args: func(addr string) ([]string, string) {
				if os.Getenv("FEDRISK_TEST_POSTGRES_URL") == "" {
					return nil, "FEDRISK_TEST_POSTGRES_URL is not set"
				}
				return []string{"--web.listen-address=" + addr}, ""
			},
			env: func() []string { return []string{"DATA_SOURCE_NAME=" + os.Getenv("FEDRISK_TEST_POSTGRES_URL")} },
		},
		"redis-exporter": {
			binaries: []string{"prometheus-redis-exporter", "redis_exporter"},
			args: func(addr string) ([]string, string) {
				u := os.Getenv("FEDRISK_TEST_REDIS_URL")
				if u == "" {
					return nil, "FEDRISK_TEST_REDIS_URL is not set"
				}
				return []string{"-web.listen-address=" + addr, "-redis.addr=" + u}, ""
			},
		},
	}
}

// TestExporterCatalogue starts each exporter of exporter_metrics.txt that is
// installed (Debian packages prometheus-node-exporter,
// prometheus-postgres-exporter, prometheus-redis-exporter), against the
// test PostgreSQL and Redis, scrapes it and checks every listed metric:
// exported, with the listed type and exactly the listed labels.
func TestExporterCatalogue(t *testing.T) {
	fams, err := monitoring.ReadExporterCatalogue(exportersFile)
	if err != nil {
		t.Fatal(err)
	}
	byJob := map[string][]monitoring.Family{}
	for _, f := range fams {
		byJob[f.Job] = append(byJob[f.Job], f)
	}
	for job, want := range byJob {
		t.Run(job, func(t *testing.T) {
			run, ok := exporterRuns()[job]
			if !ok {
				t.Fatalf("%s: no way to start exporter job %q in this test", exportersFile, job)
			}
			var bin string
			for _, b := range run.binaries {
				if p, err := exec.LookPath(b); err == nil {
					bin = p
					break
				}
			}
			if bin == "" {
				t.Skipf("%s not installed (apt-get install %s)", run.binaries[0], run.binaries[0])
			}
			addr := freeAddr(t)
			args, skip := run.args(addr)
			if skip != "" {
				t.Skip(skip)
			}
			got := scrapeExporter(t, bin, args, run.env, addr)
			for _, w := range want {
				f, ok := got[w.Name]
				if !ok {
					t.Errorf("%s does not export %s", job, w.Name)
					continue
				}
				if typ := strings.ToLower(f.GetType().String()); typ != w.Type {
					t.Errorf("%s: %s is a %s, %s says %s", job, w.Name, typ, exportersFile, w.Type)
				}
				labels := map[string]bool{}
				for _, m := range f.GetMetric() {
					for _, lp := range m.GetLabel() {
						labels[lp.GetName()] = true
					}
				}
				var names []string
				for l := range labels {
					names = append(names, l)
				}
				slices.Sort(names)
				if !slices.Equal(names, w.Labels) {
					t.Errorf("%s: %s has labels %v, %s says %v", job, w.Name, names, exportersFile, w.Labels)
				}
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// scrapeExporter runs bin until its /metrics answers with what it
// collects, and returns the parsed families.
func scrapeExporter(t *testing.T, bin string, args []string, env func() []string, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env()...)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })

	var body []byte
	err := waitFor(10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		body = b.Bytes()
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not answer on %s: %v\n%s", bin, addr, err, logs.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s /metrics: %v", bin, err)
	}
	return fams
}

// waitFor polls fn until it succeeds or the timeout passes (real processes
// and sockets: polling cannot be avoided).
func waitFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
