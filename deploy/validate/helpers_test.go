package validate

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
)

// deployDir is the absolute path of deploy/ in the checkout.
func deployDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(file))
}

// configEnvKeys are the environment names of the configuration table
// (internal/config.Settings, the README's table) plus FEDRISK_PEERS, the
// one list the table documents apart.
func configEnvKeys() map[string]bool {
	keys := map[string]bool{"FEDRISK_PEERS": true}
	for _, s := range config.Settings() {
		if s.Env != "" {
			keys[s.Env] = true
		}
	}
	return keys
}

// loadNodeConfig runs the node's own configuration loader over a
// container's environment and arguments (serve --services X), so a value
// the node would refuse fails the test.
func loadNodeConfig(env map[string]string, args []string) (*config.Loaded, error) {
	in := config.Inputs{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, Flags: map[string]string{}}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--services" {
			in.Flags["services"] = args[i+1]
		}
	}
	return config.Load(in)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
