package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// TestMain lets a test run this very binary as `fedrisk` in a subprocess.
func TestMain(m *testing.M) {
	if os.Getenv("FEDRISK_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"fedrisk"}, strings.Fields(os.Getenv("FEDRISK_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

func runCLI(t *testing.T, envm map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := envm[k]; return v, ok }
	code := run(context.Background(), args, lookup, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"bad env value", map[string]string{"AUDIT_LEVEL": "loud"}, []string{"config", "print"}, 2, "audit_level (from env AUDIT_LEVEL): \"loud\"; accepted values: minimal, standard, verbose"},
		{"bad flag value", nil, []string{"serve", "--security-mode", "lax"}, 2, "security_mode (from flag --security-mode)"},
		{"unknown flag", nil, []string{"serve", "--nope"}, 2, "unknown flag"},
		{"missing config file", nil, []string{"config", "print", "--config", "/nonexistent.yaml"}, 2, "/nonexistent.yaml"},
		{"bad party for certs", nil, []string{"certs", "init", "--out", t.TempDir(), "--parties", "Bank!"}, 2, "party"},
		{"version", nil, []string{"version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.env, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (%s)", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tt.stderr)
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("want one clear line, got:\n%s", stderr)
			}
		})
	}
}

func TestConfigPrintPrecedenceAndRedaction(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte("party: filebank\naudit_level: minimal\ncache:\n  ttl: 60\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AUDIT_LEVEL":    "verbose",
		"DATABASE_URL":   "postgres://fedrisk:topsecret@db.internal:5432/federated_risk",
		"ENCRYPTION_KEY": "q0N0Vb4bV7n2Rr0i1mGQ4s8d2yQF3x1Qy6pXz9wHk2c=",
	}
	code, out, stderr := runCLI(t, env, "config", "print", "--config", file, "--audit-level", "standard")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		`party: "filebank"  # file ` + file,
		`audit_level: "standard"  # flag --audit-level`,
		`ttl: "1m0s"  # file`,
		`fedrisk:xxxxx@db.internal`,
		`encryption_key: "<redacted>"  # env ENCRYPTION_KEY`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"topsecret", "q0N0Vb4b"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q printed", secret)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := runCLI(t, nil, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "applied 0001_node") {
		t.Fatalf("first migrate: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, nil, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("second migrate: %d %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "migrate", "--status", "--data-dir", dir)
	if want := fmt.Sprintf("schema version %d, binary %d", sqldb.Latest(), sqldb.Latest()); code != 0 || !strings.Contains(out, want) {
		t.Errorf("status: %d %q", code, out)
	}
}

func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, stderr := runCLI(t, nil, "certs", "init", "--out", dir, "--parties", "bank,partner")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range []string{"ca.crt", "bank/server.crt", "bank/client.key", "partner/client.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v (output %s)", f, err, out)
		}
	}
	if code, _, stderr := runCLI(t, nil, "certs", "init", "--out", dir); code == 0 || !strings.Contains(stderr, "exist") {
		t.Errorf("overwrite without --force: %d %s", code, stderr)
	}
}

// TestServeSIGTERM runs `fedrisk serve` as a real process, checks that each
// service answers, sends SIGTERM and expects exit status 0.
func TestServeSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	args := "serve --consent-addr 127.0.0.1:0 --psi-addr 127.0.0.1:0 --serving-addr 127.0.0.1:0 --shutdown-grace 5s --data-dir " + t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FEDRISK_TEST_RUN_MAIN=1", "FEDRISK_TEST_ARGS="+args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	addrs := map[string]string{}
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for len(addrs) < 3 && lines.Scan() {
		var rec struct{ Msg, Service, Addr string }
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "listening" {
			addrs[rec.Service] = rec.Addr
		}
	}
	if len(addrs) != 3 {
		t.Fatalf("services listening: %v", addrs)
	}
	go func() { // keep draining logs so the child never blocks on a full pipe
		for lines.Scan() {
		}
	}()
	for svc, addr := range addrs {
		resp, err := http.Get("http://" + addr + "/ready")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s ready: %v %v", svc, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}
