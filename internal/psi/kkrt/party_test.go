package kkrt_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
)

// The test binary doubles as one party of a two-process session, so the
// memory and time of each party can be measured on its own: with
// KKRT_PARTY=host it listens on 127.0.0.1:0 and prints "listening ADDR";
// with KKRT_PARTY=guest it connects to KKRT_ADDR. Both read KKRT_N, KKRT_M
// and KKRT_COMMON, run the session and print one JSON partyReport line;
// with KKRT_CPUPROFILE=path each writes a CPU profile of the session to
// path.guest or path.host.
func TestMain(m *testing.M) {
	if party := os.Getenv("KKRT_PARTY"); party != "" {
		if err := runParty(party); err != nil {
			fmt.Fprintln(os.Stderr, "party:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// partyReport is what one party process measured.
type partyReport struct {
	Role         string  `json:"role"`
	WallSeconds  float64 `json:"wall_seconds"`  // from the connection to the end of the session
	SetupSeconds float64 `json:"setup_seconds"` // of which making the role (digests, deduplication, cuckoo table)
	CPUSeconds   float64 `json:"cpu_seconds"`   // user + system of the whole process
	BytesSent    int64   `json:"bytes_sent"`
	BytesRecv    int64   `json:"bytes_received"`
	PeakRSS      int64   `json:"peak_rss_bytes"` // VmHWM
	Count        int     `json:"count"`          // guest: intersection size
}

func envInt(name string) (int, error) {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func runParty(party string) error {
	n, err := envInt("KKRT_N")
	if err != nil {
		return err
	}
	m, err := envInt("KKRT_M")
	if err != nil {
		return err
	}
	common, err := envInt("KKRT_COMMON")
	if err != nil {
		return err
	}
	cfg := kkrt.Config{Session: []byte("two-process"), Mode: psi.ModeIntersection}
	ctx := context.Background()
	var conn net.Conn
	var ids [][]byte
	switch party {
	case "host":
		ids = benchIDs("h", m, common)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Printf("listening %s\n", ln.Addr())
		if conn, err = ln.Accept(); err != nil {
			return err
		}
		_ = ln.Close()
	case "guest":
		ids = benchIDs("g", n, common)
		if conn, err = net.Dial("tcp", os.Getenv("KKRT_ADDR")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown party %q", party)
	}
	defer conn.Close()
	if path := os.Getenv("KKRT_CPUPROFILE"); path != "" {
		f, err := os.Create(path + "." + party)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var role kkrt.Role
	if party == "host" {
		role, err = kkrt.NewHostRole(cfg, ids)
	} else {
		role, err = kkrt.NewGuestRole(cfg, ids)
	}
	if err != nil {
		return err
	}
	setup := time.Since(start)
	sent, recv, err := runStream(ctx, role, conn)
	if err != nil {
		return err
	}
	rep := partyReport{Role: party, WallSeconds: time.Since(start).Seconds(), SetupSeconds: setup.Seconds(),
		BytesSent: sent, BytesRecv: recv, PeakRSS: peakRSS()}
	res, err := role.Result()
	if err != nil {
		return err
	}
	rep.Count = res.Count
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		rep.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// peakRSS reads this process's peak resident set size (VmHWM), 0 if
// /proc is not there.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// twoProcesses runs a session between two child processes of this test
// binary and returns their reports and the wall time from starting the
// guest to both having finished.
func twoProcesses(ctx context.Context, n, m, common int) (guest, host partyReport, wall time.Duration, err error) {
	env := append(os.Environ(), fmt.Sprintf("KKRT_N=%d", n), fmt.Sprintf("KKRT_M=%d", m), fmt.Sprintf("KKRT_COMMON=%d", common))
	hc := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	hc.Env = append(env, "KKRT_PARTY=host")
	hc.Stderr = os.Stderr
	hout, err := hc.StdoutPipe()
	if err != nil {
		return guest, host, 0, err
	}
	if err := hc.Start(); err != nil {
		return guest, host, 0, err
	}
	defer func() { _ = hc.Wait() }()
	sc := bufio.NewScanner(hout)
	if !sc.Scan() {
		return guest, host, 0, errors.New("host printed nothing")
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		return guest, host, 0, fmt.Errorf("host printed %q", sc.Text())
	}
	start := time.Now()
	gc := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	gc.Env = append(env, "KKRT_PARTY=guest", "KKRT_ADDR="+addr)
	gc.Stderr = os.Stderr
	gout, err := gc.Output()
	if err != nil {
		return guest, host, 0, fmt.Errorf("guest: %w", err)
	}
	if !sc.Scan() {
		return guest, host, 0, errors.New("host printed no report")
	}
	wall = time.Since(start)
	if err := json.Unmarshal(gout, &guest); err != nil {
		return guest, host, 0, fmt.Errorf("guest report: %w", err)
	}
	if err := json.Unmarshal(sc.Bytes(), &host); err != nil {
		return guest, host, 0, fmt.Errorf("host report: %w", err)
	}
	return guest, host, wall, nil
}

// TestTwoProcesses runs a session between two processes over loopback
// TCP and checks the intersection and the byte counts.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes")
	}
	const n, m, common = 30000, 20000, 7000
	g, h, _, err := twoProcesses(t.Context(), n, m, common)
	if err != nil {
		t.Fatal(err)
	}
	if g.Count != common {
		t.Fatalf("guest found %d, want %d", g.Count, common)
	}
	if g.BytesSent != h.BytesRecv || h.BytesSent != g.BytesRecv {
		t.Fatalf("bytes: guest sent %d, host received %d; host sent %d, guest received %d", g.BytesSent, h.BytesRecv, h.BytesSent, g.BytesRecv)
	}
}

func benchTwoProcesses(b *testing.B, n int) {
	var g, h partyReport
	var wall time.Duration
	for b.Loop() {
		var err error
		if g, h, wall, err = twoProcesses(b.Context(), n, n, n/2); err != nil {
			b.Fatal(err)
		}
		if g.Count != n/2 {
			b.Fatalf("guest found %d, want %d", g.Count, n/2)
		}
	}
	floor, err := kkrt.Floor(n, n)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(g.WallSeconds, "guest-s")
	b.ReportMetric(g.SetupSeconds, "guest-setup-s")
	b.ReportMetric(h.SetupSeconds, "host-setup-s")
	b.ReportMetric(floor.Seconds, "floor-s")
	b.ReportMetric(float64(g.BytesSent+h.BytesSent), "wire-bytes")
	b.ReportMetric(float64(g.PeakRSS)/(1<<20), "guest-rss-MiB")
	b.ReportMetric(float64(h.PeakRSS)/(1<<20), "host-rss-MiB")
	b.ReportMetric(g.CPUSeconds, "guest-cpu-s")
	b.ReportMetric(h.CPUSeconds, "host-cpu-s")
}

// BenchmarkTwoProcesses_2_20: n = m = 2^20, half in common, each party its
// own process, over loopback TCP. Reports wall time, floor, bytes, peak RSS.
func BenchmarkTwoProcesses_2_20(b *testing.B) { benchTwoProcesses(b, 1<<20) }

// BenchmarkTwoProcesses_2_24: the same at 2^24 (several GB per party).
func BenchmarkTwoProcesses_2_24(b *testing.B) { benchTwoProcesses(b, 1<<24) }
