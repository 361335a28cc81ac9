package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
)

// runPSI runs `fedrisk psi ARGS` through run().
func runPSI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, nil, append([]string{"psi"}, args...)...)
}

// startPSINode runs a node with only the psi service on plain HTTP,
// reading CSV inputs from inputs.
func startPSINode(t *testing.T, party, role string, peers []config.Peer, inputs string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Party, cfg.Role, cfg.DataDir, cfg.PSIInputDir = party, role, t.TempDir(), inputs
	cfg.Services = []string{config.ServicePSI}
	cfg.Addrs[config.ServicePSI] = "127.0.0.1:0"
	cfg.Peers = peers
	cfg.HTTP.ShutdownGrace = 3 * time.Second
	factory := func(ctx context.Context, e node.Env) (node.Service, error) {
		d := node.PSIDeps(e)
		d.Options = psijob.Options{BatchSize: 64, PollEvery: 50 * time.Millisecond}
		return psinode.New(ctx, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Options{Config: cfg, Registry: prometheus.NewRegistry(), Services: map[string]node.Factory{config.ServicePSI: factory}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + n.Addr(config.ServicePSI)
}

func TestPSICommands(t *testing.T) {
	dir := t.TempDir()
	host := startPSINode(t, "partner", "host", []config.Peer{{Name: "bank", URL: "http://127.0.0.1:1"}}, dir)
	guest := startPSINode(t, "bank", "guest", []config.Peer{{Name: "partner", URL: host}}, dir)
	var g, h strings.Builder
	g.WriteString("name,id\n")
	h.WriteString("id\n")
	for i := range 300 {
		fmt.Fprintf(&g, "n%d,ID-%d\n", i, i)
		if i%3 == 0 {
			fmt.Fprintf(&h, " ID-%d\n", i)
		}
	}
	h.WriteString("ID-9999\n")
	os.WriteFile(filepath.Join(dir, "guest.csv"), []byte(g.String()), 0o600)
	os.WriteFile(filepath.Join(dir, "host.csv"), []byte(h.String()), 0o600)

	hostDone := make(chan [3]string, 1)
	go func() {
		code, out, errOut := runPSI(t, "run", "--server", host, "--peer", "bank", "--input", filepath.Join(dir, "host.csv"), "--poll", "50ms")
		hostDone <- [3]string{fmt.Sprint(code), out, errOut}
	}()
	// The host's job must exist before the guest starts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ := runPSI(t, "list", "--server", host, "--status", "pending")
		if strings.Contains(out, "psi_") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the host job did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	outFile := filepath.Join(dir, "intersection.csv")
	code, out, errOut := runPSI(t, "run", "--server", guest, "--peer", "partner", "--input", filepath.Join(dir, "guest.csv"), "--column", "id", "--out", outFile, "--poll", "50ms")
	if code != 0 {
		t.Fatalf("guest run: %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "done: intersection 100 of 300 identifiers (partner has 101)") || !strings.Contains(out, "wrote 100 rows") {
		t.Errorf("guest output:\n%s", out)
	}
	if !regexp.MustCompile(`items \(\d+\.\d%\)`).MatchString(errOut) || !strings.Contains(errOut, "done") {
		t.Errorf("no progress lines:\n%s", errOut)
	}
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 101 || lines[0] != "row,id" || lines[1] != "0,ID-0" || lines[100] != "297,ID-297" {
		t.Errorf("intersection.csv: %d lines, %q ... %q", len(lines), lines[0], lines[len(lines)-1])
	}
	select {
	case r := <-hostDone:
		if r[0] != "0" || !strings.Contains(r[1], "the host learns no intersection") {
			t.Errorf("host run: %v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host's psi run did not end")
	}

	code, out, _ = runPSI(t, "list", "--server", guest)
	if code != 0 || !strings.Contains(out, "INTERSECTION") || !strings.Contains(out, "done") {
		t.Errorf("list: %d\n%s", code, out)
	}
	id := regexp.MustCompile(`psi_[0-9a-f]{20}`).FindString(out)
	code, out, _ = runPSI(t, "status", "--server", guest, id)
	if code != 0 || !strings.Contains(out, `"intersection_size": 100`) {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, _, errOut = runPSI(t, "cancel", "--server", guest, id)
	if code != 1 || !strings.Contains(errOut, "job_finished") {
		t.Errorf("cancel of a finished job: %d %s", code, errOut)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no peer", []string{"run", "--input", outFile}, "--peer is required"},
		{"peer url", []string{"run", "--peer", "https://partner:7001", "--input", outFile}, "not a URL"},
		{"no input", []string{"run", "--peer", "partner"}, "exactly one of --input"},
		{"missing file", []string{"run", "--peer", "partner", "--input", filepath.Join(dir, "nope.csv")}, "--input"},
		{"bad mode", []string{"run", "--peer", "partner", "--input", outFile, "--mode", "union"}, "--mode"},
		{"host out outside both", []string{"run", "--role", "host", "--peer", "partner", "--input", outFile, "--out", "x.csv"}, "--out"},
		{"cardinality out", []string{"run", "--peer", "partner", "--input", outFile, "--mode", "cardinality", "--out", "x.csv"}, "--out"},
		{"bad id", []string{"status", "123"}, "not a PSI job id"},
		{"two ids", []string{"cancel", "a", "b"}, "accepts 1 arg"},
		{"unknown flag", []string{"list", "--nope"}, "unknown flag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runPSI(t, append(tt.args, "--server", guest)...)
			if code != 2 || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Errorf("exit %d, stderr %q (want exit 2, one line with %q)", code, errOut, tt.want)
			}
		})
	}
	// A job that fails shows its reason and exits 1: the host has no job for it.
	code, _, errOut = runPSI(t, "run", "--server", guest, "--peer", "partner", "--input", filepath.Join(dir, "guest.csv"), "--poll", "50ms", "--quiet")
	if code != 1 || !strings.Contains(errOut, "no pending host job") {
		t.Errorf("failing job: %d %s", code, errOut)
	}
}

// TestPSIBothCommands runs mode both through the CLI on both sides: each
// operator writes its own rows of the intersection.
func TestPSIBothCommands(t *testing.T) {
	dir := t.TempDir()
	host := startPSINode(t, "partner", "host", []config.Peer{{Name: "bank", URL: "http://127.0.0.1:1"}}, dir)
	guest := startPSINode(t, "bank", "guest", []config.Peer{{Name: "partner", URL: host}}, dir)
	var g, h strings.Builder
	g.WriteString("id\n")
	h.WriteString("id\n")
	for i := range 200 {
		fmt.Fprintf(&g, "ID-%d\n", i)
	}
	for i := 150; i < 260; i++ { // rows 0..49 of the host are in the intersection
		fmt.Fprintf(&h, "ID-%d\n", i)
	}
	os.WriteFile(filepath.Join(dir, "guest.csv"), []byte(g.String()), 0o600)
	os.WriteFile(filepath.Join(dir, "host.csv"), []byte(h.String()), 0o600)
	hostOut, guestOut := filepath.Join(dir, "host-out.csv"), filepath.Join(dir, "guest-out.csv")

	hostDone := make(chan [3]string, 1)
	go func() {
		code, out, errOut := runPSI(t, "run", "--server", host, "--role", "host", "--peer", "bank", "--mode", "both", "--input", filepath.Join(dir, "host.csv"), "--out", hostOut, "--poll", "50ms")
		hostDone <- [3]string{fmt.Sprint(code), out, errOut}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ := runPSI(t, "list", "--server", host, "--status", "pending")
		if strings.Contains(out, "both") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the host job did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, errOut := runPSI(t, "run", "--server", guest, "--peer", "partner", "--mode", "both", "--input", filepath.Join(dir, "guest.csv"), "--out", guestOut, "--poll", "50ms")
	if code != 0 || !strings.Contains(out, "done: intersection 50 of 200 identifiers (partner has 110)") || !strings.Contains(out, "wrote 50 rows") {
		t.Fatalf("guest run: %d\n%s\n%s", code, out, errOut)
	}
	select {
	case r := <-hostDone:
		if r[0] != "0" || !strings.Contains(r[1], "done: intersection 50 of 110 identifiers, as revealed by bank (its set: 200)") || !strings.Contains(r[1], "wrote 50 rows") {
			t.Fatalf("host run: %v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the host's psi run did not end")
	}
	for _, c := range []struct {
		path        string
		first, last string
	}{{guestOut, "150,ID-150", "199,ID-199"}, {hostOut, "0,ID-150", "49,ID-199"}} {
		data, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 51 || lines[0] != "row,id" || lines[1] != c.first || lines[50] != c.last {
			t.Errorf("%s: %d lines, %q ... %q", c.path, len(lines), lines[1], lines[len(lines)-1])
		}
	}
}
