package node_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/node"
)

// TestDataDirMode: a data directory other users can reach gets a warning
// at start, and strict security mode refuses it; a fresh one is made 0700
// (issue 12, finding 8).
func TestDataDirMode(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
		var logs logBuffer
		start(t, node.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		fi, err := os.Stat(cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("fresh data_dir mode %04o, want 0700", perm)
		}
		if strings.Contains(logs.String(), "data_dir") {
			t.Errorf("a warning about a private data_dir:\n%s", logs.String())
		}
	})
	t.Run("existing 0755", func(t *testing.T) {
		cfg := testConfig(t)
		if err := os.Chmod(cfg.DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		start(t, node.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		if !strings.Contains(logs.String(), "has mode 0755") {
			t.Errorf("no warning about a data_dir of mode 0755:\n%s", logs.String())
		}
		cfg.SecurityMode, cfg.AuthRequired = "strict", true
		if _, err := node.New(context.Background(), node.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "mode 0755") {
			t.Errorf("strict mode with a data_dir of mode 0755: %v", err)
		}
	})
}
