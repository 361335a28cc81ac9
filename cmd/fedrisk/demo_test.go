package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoUsage checks that bad demo options exit 2 with one line and
// write nothing.
func TestDemoUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	for _, args := range [][]string{
		{"demo", "--noise", "loud"},
		{"demo", "--consent-missing", "0.7", "--consent-withdrawn", "0.5"},
		{"demo", "--customers", "-1"},
		{"demo", "--base-port", "70000"},
		{"demo", "--schema", "Bad-Name"},
		{"demo", "extra"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			code, out, stderr := runCLI(t, nil, append(args, "--dir", dir)...)
			if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") > 0 || stderr == "" {
				t.Errorf("exit %d, stderr %q, stdout %q", code, stderr, out)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a refused demo wrote its directory")
			}
		})
	}
}
