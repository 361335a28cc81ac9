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
	cmd, addrs := startServe(t, "serve --consent-addr 127.0.0.1:0 --psi-addr 127.0.0.1:0 --serving-addr 127.0.0.1:0 --shutdown-grace 5s --data-dir "+t.TempDir())
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

// startServe runs `fedrisk serve` as a subprocess and returns the address
// of each service once it listens.
func startServe(t *testing.T, args string) (*exec.Cmd, map[string]string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FEDRISK_TEST_RUN_MAIN=1", "FEDRISK_TEST_ARGS="+args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	want := strings.Count(args, "-addr")
	addrs := map[string]string{}
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for len(addrs) < want && lines.Scan() {
		var rec struct{ Msg, Service, Addr string }
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "listening" {
			addrs[rec.Service] = rec.Addr
		}
	}
	if len(addrs) < want {
		t.Fatalf("services listening: %v", addrs)
	}
	go func() {
		for lines.Scan() {
		}
	}()
	return cmd, addrs
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestAcknowledgedSurvivesKill9: a grant and a withdrawal that returned 2xx
// are there after the process is killed with SIGKILL and started again.
func TestAcknowledgedSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	args := "serve --services consent --consent-addr 127.0.0.1:0 --data-dir " + t.TempDir()
	cmd, addrs := startServe(t, args)
	base := "http://" + addrs["consent"] + "/consent/v1"
	if code, out := postJSON(t, base+"/purposes", `{"id":"credit_risk_assessment","policy_text":"v1"}`); code != 201 {
		t.Fatalf("purpose: %d %v", code, out)
	}
	grant := func(subject string) string {
		body := `{"subject":"` + subject + `","purpose":"credit_risk_assessment","party":"partner","data_categories":["telecom.usage"],"policy_version":1,` +
			`"evidence":{"channel":"web","collector":"test","collected_at":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `"}}`
		code, out := postJSON(t, base+"/consents", body)
		if code != 201 {
			t.Fatalf("grant: %d %v", code, out)
		}
		return out["id"].(string)
	}
	kept, withdrawn := grant("kill-1"), grant("kill-2")
	if code, out := postJSON(t, base+"/consents/"+withdrawn+"/withdraw", ""); code != 200 {
		t.Fatalf("withdraw: %d %v", code, out)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	_, addrs = startServe(t, args)
	base = "http://" + addrs["consent"] + "/consent/v1"
	for id, status := range map[string]string{kept: "active", withdrawn: "withdrawn"} {
		resp, err := http.Get(base + "/consents/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if resp.StatusCode != 200 || c["status"] != status {
			t.Errorf("%s after kill -9: %d %v, want %s", id, resp.StatusCode, c["status"], status)
		}
	}
}

// TestConsentCLI runs the consent scenario through the CLI against a real
// `fedrisk serve`, then the offline tools on the same database.
func TestConsentCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	_, addrs := startServe(t, "serve --services consent --consent-addr 127.0.0.1:0 --data-dir "+dir)
	server := "--server=http://" + addrs["consent"]
	cli := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(context.Background(), args, func(string) (string, bool) { return "", false }, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := cli("", "consent", "purpose", "create", server, "--policy-text", "we score credit risk"); code != 0 {
		t.Fatalf("purpose create: %d %s %s", code, out, errs)
	}
	code, out, errs := cli("ID-4401\n", "consent", "grant", server, "--subject", "-", "--party", "partner", "--categories", "telecom.usage",
		"--policy-version", "1", "--channel", "branch", "--collector", "clerk-7", "--idempotency-key", "cli-1")
	if code != 0 {
		t.Fatalf("grant: %d %s %s", code, out, errs)
	}
	var c struct{ ID, Status string }
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Status != "active" {
		t.Fatalf("grant output: %s", out)
	}
	if code, out, _ := cli("", "consent", "token", server, c.ID); code != 0 || !strings.Contains(out, `"token_type": "consent+jwt"`) {
		t.Errorf("token: %d %s", code, out)
	}
	if code, out, _ := cli("", "consent", "withdraw", server, c.ID); code != 0 || !strings.Contains(out, `"status": "withdrawn"`) {
		t.Errorf("withdraw: %d %s", code, out)
	}
	if code, _, errs := cli("", "consent", "withdraw", server, c.ID); code != 1 || !strings.Contains(errs, "consent_not_active (HTTP 409)") {
		t.Errorf("second withdraw: %d %s", code, errs)
	}
	if code, out, _ := cli("ID-4401\n", "consent", "export", server, "--subject", "-"); code != 0 || !strings.Contains(out, `"subject": "id-4401"`) {
		t.Errorf("export: %d %s", code, out)
	}
	if code, _, errs := cli("", "consent", "get", server); code != 2 {
		t.Errorf("missing argument: %d %s", code, errs)
	}
	dataDir := "--data-dir=" + dir
	if code, out, errs := cli("", "keys", "rotate", "jwt", dataDir); code != 0 || !strings.Contains(out, "signing key rotated") {
		t.Errorf("rotate jwt: %d %s %s", code, out, errs)
	}
	if code, out, errs := cli("", "keys", "rotate", "encryption", dataDir); code != 0 || !strings.Contains(out, "active version 2") {
		t.Errorf("rotate encryption: %d %s %s", code, out, errs)
	}
	if code, _, _ := cli("", "keys", "rotate", "everything", dataDir); code != 2 {
		t.Errorf("unknown key kind: %d", code)
	}
	if code, out, errs := cli("", "audit", "verify", dataDir); code != 0 || !strings.Contains(out, "audit log intact") {
		t.Errorf("audit verify: %d %s %s", code, out, errs)
	}
	if code, out, _ := cli("", "tokens", "create", "ops", "operator", dataDir); code != 0 || !strings.HasPrefix(out, "frk_") {
		t.Errorf("tokens create: %d %s", code, out)
	}
	if code, _, _ := cli("", "tokens", "create", "ops", "root", dataDir); code != 2 {
		t.Errorf("bad role: %d", code)
	}
}
