package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
)

// serveLogs runs `fedrisk serve ARGS` in this process until every service
// listens, then stops it, and returns its log lines, the services'
// addresses and run's exit code.
func serveLogs(t *testing.T, env map[string]string, args ...string) ([]string, map[string]string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() {
		code <- run(ctx, append([]string{"serve"}, args...), lookup, strings.NewReader(""), io.Discard, pw)
		pw.Close()
	}()
	var lines []string
	addrs := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(addrs) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
		var rec struct{ Msg, Service, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
			addrs[rec.Service] = rec.Addr
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	stop := sync.OnceValue(func() int { cancel(); return <-code })
	t.Cleanup(func() { stop() })
	if len(addrs) < 3 {
		t.Fatalf("services listening: %v\n%s", addrs, strings.Join(lines, "\n"))
	}
	return lines, addrs, stop
}

func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestServeLoopbackTrust: outside the demo, `fedrisk serve` with
// AUTH_REQUIRED=false says once, loudly, what it exposes; strict security
// mode turns loopback trust off (issue 12, finding 16).
func TestServeLoopbackTrust(t *testing.T) {
	addrs := []string{"--consent-addr", "127.0.0.1:0", "--psi-addr", "127.0.0.1:0", "--serving-addr", "127.0.0.1:0", "--shutdown-grace", "5s"}

	t.Run("standard", func(t *testing.T) {
		lines, _, stop := serveLogs(t, nil, append(addrs, "--data-dir", t.TempDir())...)
		if n := count(lines, "SECURITY: AUTH_REQUIRED=false"); n != 1 {
			t.Errorf("%d warnings about loopback trust, want 1:\n%s", n, strings.Join(lines, "\n"))
		}
		for _, exposure := range []string{"admin", "X-Fedrisk-Party"} {
			if count(lines, exposure) == 0 {
				t.Errorf("the warning does not name %q:\n%s", exposure, strings.Join(lines, "\n"))
			}
		}
		if code := stop(); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})

	t.Run("strict", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil { // strict refuses a data_dir open to others
			t.Fatal(err)
		}
		lines, svc, _ := serveLogs(t, map[string]string{"SECURITY_MODE": "strict"}, append(addrs, "--data-dir", dir)...)
		if n := count(lines, "SECURITY: AUTH_REQUIRED=false"); n != 0 {
			t.Errorf("strict mode warns about loopback trust:\n%s", strings.Join(lines, "\n"))
		}
		// A loopback caller without a token is nobody, on a client API
		// and on a plain-HTTP peer API alike.
		resp, err := http.Get("http://" + svc["consent"] + "/consent/v1/purposes")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("loopback client API call without a token: %d, want 401", resp.StatusCode)
		}
		req, _ := http.NewRequest("POST", "http://"+svc["psi"]+"/psi/v1/peer/sessions", strings.NewReader(`{}`))
		req.Header.Set("X-Fedrisk-Party", "partner")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("plain loopback peer call naming itself: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("strict with AUTH_REQUIRED=false", func(t *testing.T) {
		code, _, errOut := runCLI(t, map[string]string{"SECURITY_MODE": "strict", "AUTH_REQUIRED": "false"}, append([]string{"serve", "--data-dir", t.TempDir()}, addrs...)...)
		if code != exitBadUsage || !strings.Contains(errOut, "auth_required") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}
