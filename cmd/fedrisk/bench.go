package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
)

func newBenchCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks that run the real system (numbers for docs/benchmarks.md)"}
	cmd.AddCommand(newBenchPSICmd(stdout, stderr), newBenchTrainCmd(stdout, stderr), newBenchScoreCmd(lookup, stdout, stderr))
	return cmd
}

// PSIBenchResult is what `fedrisk bench psi --json` prints.
type PSIBenchResult struct {
	N                 int     `json:"n"`
	M                 int     `json:"m"`
	Cores             int     `json:"cores"`
	WallSeconds       float64 `json:"wall_seconds"`
	FloorSeconds      float64 `json:"floor_seconds"`
	WallOverFloor     float64 `json:"wall_over_floor"`
	ElementsPerSecond float64 `json:"elements_per_second_per_core"`
	HashBlindMicros   float64 `json:"hash_and_blind_us_per_element"`
	ReblindMicros     float64 `json:"reblind_us_per_element"`
	BytesOnWire       int64   `json:"bytes_on_wire"`
	PeakRSSGuest      int64   `json:"peak_rss_bytes_guest"`
	PeakRSSHost       int64   `json:"peak_rss_bytes_host"`
	IntersectionSize  int64   `json:"intersection_size"`
	Expected          int64   `json:"expected_intersection_size"`
	Correct           bool    `json:"correct"`
}

func newBenchPSICmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		n, m, batch int
		overlap     float64
		asJSON      bool
		keep        bool
	)
	cmd := &cobra.Command{
		Use:   "psi",
		Short: "Run PSI between two fedrisk processes over loopback mutual TLS and measure it",
		Long: `Generates n guest and m host identifiers with the given overlap, starts a guest and a
host node as two processes of this binary on 127.0.0.1 with development certificates,
runs one PSI job, and reports wall time, the floor (hash-to-group plus two scalar
multiplications per element, measured in the same run on all cores), bytes on the wire
(batch payloads), peak RSS of each party, and whether the intersection equals the
plaintext reference.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n <= 0 || n > 1<<24 {
				return &usageError{fmt.Errorf("--n must be 1..16777216")}
			}
			if m <= 0 {
				m = n
			}
			if overlap < 0 || overlap > 1 {
				return &usageError{fmt.Errorf("--overlap must be 0..1")}
			}
			progress := stderr
			if asJSON {
				progress = io.Discard
			}
			res, err := benchPSI(cmd.Context(), n, m, overlap, batch, keep, progress)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(res)
			}
			fmt.Fprintf(stdout, "PSI n=%d m=%d on %d cores: %.1f s wall (floor %.1f s, ratio %.2f), %.0f elements/s/core\n",
				res.N, res.M, res.Cores, res.WallSeconds, res.FloorSeconds, res.WallOverFloor, res.ElementsPerSecond)
			fmt.Fprintf(stdout, "primitives: hash+blind %.1f µs, reblind %.1f µs per element (all cores)\n", res.HashBlindMicros, res.ReblindMicros)
			fmt.Fprintf(stdout, "wire: %.1f MB; peak RSS guest %.0f MB, host %.0f MB\n", float64(res.BytesOnWire)/1e6, float64(res.PeakRSSGuest)/1e6, float64(res.PeakRSSHost)/1e6)
			fmt.Fprintf(stdout, "intersection %d (expected %d): correct=%v\n", res.IntersectionSize, res.Expected, res.Correct)
			if !res.Correct {
				return fmt.Errorf("intersection differs from the plaintext reference")
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&n, "n", 1<<16, "guest set size")
	fs.IntVar(&m, "m", 0, "host set size (default n)")
	fs.Float64Var(&overlap, "overlap", 0.5, "share of the guest's identifiers the host also has")
	fs.IntVar(&batch, "batch-size", 0, "elements per message (default the node's)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	fs.BoolVar(&keep, "keep", false, "keep the working directory (logs, databases)")
	return cmd
}

func benchPSI(ctx context.Context, n, m int, overlap float64, batch int, keep bool, progress io.Writer) (PSIBenchResult, error) {
	res := PSIBenchResult{N: n, M: m, Cores: runtime.GOMAXPROCS(0)}
	dir, err := os.MkdirTemp("", "fedrisk-bench-psi-")
	if err != nil {
		return res, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(progress, "working directory:", dir)
	}

	fmt.Fprintf(progress, "generating %d + %d identifiers (overlap %.0f%%)\n", n, m, overlap*100)
	common := int(float64(min(n, m)) * overlap)
	res.Expected = int64(common)
	if err := writeIDs(filepath.Join(dir, "guest.csv"), "g", n, common); err != nil {
		return res, err
	}
	if err := writeIDs(filepath.Join(dir, "host.csv"), "h", m, common); err != nil {
		return res, err
	}

	fmt.Fprintln(progress, "measuring the primitives")
	if res.HashBlindMicros, res.ReblindMicros, err = primitiveCosts(); err != nil {
		return res, err
	}
	res.FloorSeconds = float64(n+m) * (res.HashBlindMicros + res.ReblindMicros) / 1e6

	pair, err := startPair(ctx, dir, "psi", true)
	if err != nil {
		return res, err
	}
	defer pair.stop()
	gc, hc := pair.guestAPI, pair.hostAPI
	job := func(c *apiClient, role, peer, file string) (psiapi.JobBody, error) {
		var j psiapi.JobBody
		_, err := c.do(ctx, http.MethodPost, "/psi/v1/jobs", psiapi.CreateJobBody{Role: role, Peer: peer, BatchSize: batch,
			Input: psiapi.InputBody{Kind: "csv", Path: file, Column: "id"}}, &j)
		return j, err
	}
	fmt.Fprintln(progress, "running PSI")
	start := time.Now()
	if _, err := job(hc, "host", "bank", filepath.Join(dir, "host.csv")); err != nil {
		return res, fmt.Errorf("host job: %w", err)
	}
	gj, err := job(gc, "guest", "partner", filepath.Join(dir, "guest.csv"))
	if err != nil {
		return res, fmt.Errorf("guest job: %w", err)
	}
	final, err := waitJob(ctx, gc, gj.ID, 200*time.Millisecond, progress == io.Discard, progress)
	if err != nil {
		return res, err
	}
	res.WallSeconds = time.Since(start).Seconds()
	if final.Status != "done" {
		return res, fmt.Errorf("guest job ended %s: %s", final.Status, final.Error)
	}
	if final.IntersectionSize != nil {
		res.IntersectionSize = *final.IntersectionSize
	}
	res.Correct = res.IntersectionSize == res.Expected
	res.ElementsPerSecond = float64(n+m) / res.WallSeconds / float64(res.Cores)
	if res.FloorSeconds > 0 {
		res.WallOverFloor = res.WallSeconds / res.FloorSeconds
	}
	sent := func(c *apiClient, role string) int64 {
		v, _ := scrapeCounter(ctx, c, "psi_bytes_total", map[string]string{"role": role, "direction": "sent"})
		return int64(v)
	}
	res.BytesOnWire = sent(gc, "guest") + sent(hc, "host")
	res.PeakRSSGuest, res.PeakRSSHost = peakRSS(pair.guest.Process.Pid), peakRSS(pair.host.Process.Pid)
	return res, nil
}

// writeIDs writes n random identifiers; the first common are shared by
// both sides (prefix "c"), the rest are the side's own.
func writeIDs(path, side string, n, common int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "id")
	var b [8]byte
	for i := 0; i < n; i++ {
		if i < common {
			fmt.Fprintf(w, "c%010d\n", i)
			continue
		}
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s%s\n", side, hex.EncodeToString(b[:]))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// primitiveCosts measures, on all cores, the wall time per element of
// hash-to-group plus blinding, and of re-blinding a received point.
func primitiveCosts() (hashBlind, reblind float64, err error) {
	const k = 16384
	key, err := psi.NewKey()
	if err != nil {
		return 0, 0, err
	}
	ids := make([][]byte, k)
	for i := range ids {
		ids[i] = binary.BigEndian.AppendUint64([]byte("bench-"), uint64(i))
	}
	dst := psi.DST([]byte("bench"))
	pts := make([]byte, 32*k)
	t := time.Now()
	if err := key.HashAndBlind(dst, ids, pts); err != nil {
		return 0, 0, err
	}
	hashBlind = float64(time.Since(t).Microseconds()) / k
	out := make([]byte, 32*k)
	t = time.Now()
	if err := key.Reblind(pts, 0, out); err != nil {
		return 0, 0, err
	}
	reblind = float64(time.Since(t).Microseconds()) / k
	return hashBlind, reblind, nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHealthy(ctx context.Context, c *apiClient) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.do(ctx, http.MethodGet, "/health", nil, nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrapeCounter sums the samples of a metric whose labels include want.
func scrapeCounter(ctx context.Context, c *apiClient, name string, want map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		labels, value, ok := strings.Cut(line[len(name):], "} ")
		if !ok {
			continue
		}
		match := true
		for k, v := range want {
			if !strings.Contains(labels, k+`="`+v+`"`) {
				match = false
			}
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && match {
			total += f
		}
	}
	return total, sc.Err()
}

// peakRSS reads a process's peak resident set (VmHWM) from /proc.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
	}
}

// benchPair is a guest ("bank") and a host ("partner") fedrisk process on
// loopback with development certificates, running one service each, and
// an API client for each.
type benchPair struct {
	guest, host       *exec.Cmd
	guestAPI, hostAPI *apiClient
}

// startPair starts the two processes under dir and waits until both
// answer. requireClientCert makes every listener demand mutual TLS.
func startPair(ctx context.Context, dir, service string, requireClientCert bool) (*benchPair, error) {
	certs, err := pki.GenerateDev(filepath.Join(dir, "certs"), []string{"bank", "partner"}, pki.DevOptions{})
	if err != nil {
		return nil, err
	}
	gPort, hPort := freePort(), freePort()
	if gPort == 0 || hPort == 0 {
		return nil, fmt.Errorf("no free port")
	}
	gAddr, hAddr := "127.0.0.1:"+strconv.Itoa(gPort), "127.0.0.1:"+strconv.Itoa(hPort)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	node := func(party, role, addr, peer, peerAddr string) (*exec.Cmd, error) {
		f := certs.Parties[party]
		args := []string{"serve", "--party", party, "--role", role, "--services", service, "--" + service + "-addr", addr,
			"--data-dir", filepath.Join(dir, party), "--log-level", "warn",
			"--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-ca", certs.CACert,
			"--tls-client-cert", f.ClientCert, "--tls-client-key", f.ClientKey,
			"--peer", peer + "=https://" + peerAddr}
		if requireClientCert {
			args = append(args, "--tls-require-client-cert")
		}
		cmd := exec.CommandContext(ctx, exe, args...)
		logf, err := os.Create(filepath.Join(dir, party+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd, cmd.Start()
	}
	client := func(party, addr string) (*apiClient, error) {
		f := certs.Parties[party]
		cf := &clientFlags{server: "https://" + addr, ca: certs.CACert, cert: f.ClientCert, key: f.ClientKey}
		c, err := cf.client()
		if err != nil {
			return nil, err
		}
		c.http.Timeout = 0
		if err := waitHealthy(ctx, c); err != nil {
			return nil, fmt.Errorf("%s did not come up (see %s): %w", party, filepath.Join(dir, party+".log"), err)
		}
		return c, nil
	}
	p := &benchPair{}
	if p.host, err = node("partner", "host", hAddr, "bank", gAddr); err != nil {
		return nil, fmt.Errorf("start host: %w", err)
	}
	if p.guest, err = node("bank", "guest", gAddr, "partner", hAddr); err != nil {
		stopProcess(p.host)
		return nil, fmt.Errorf("start guest: %w", err)
	}
	if p.hostAPI, err = client("partner", hAddr); err == nil {
		p.guestAPI, err = client("bank", gAddr)
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *benchPair) stop() {
	stopProcess(p.guest)
	stopProcess(p.host)
}
