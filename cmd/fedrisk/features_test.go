package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featurestest"
)

// runFeatures runs `fedrisk ARGS` through run(), in process.
func runFeatures(t *testing.T, envm map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, envm, args...)
}

// featuresHeadFile writes the header and first n rows of a demo file to dir.
func featuresHeadFile(t *testing.T, dir, rel string, n int, edit func(i int, line string) string) string {
	t.Helper()
	in, err := os.Open(featurestest.RepoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var b strings.Builder
	sc := bufio.NewScanner(in)
	for i := 0; i <= n && sc.Scan(); i++ {
		line := sc.Text()
		if edit != nil {
			line = edit(i, line)
		}
		b.WriteString(line + "\n")
	}
	path := filepath.Join(dir, filepath.Base(rel))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFeaturesCLI(t *testing.T) {
	dir, files := t.TempDir(), t.TempDir()
	views := featurestest.RepoFile(t, "internal/features/examples/views.yaml")
	host := featuresHeadFile(t, files, "data/default_credit_hetero_host.csv", 2000, nil)
	guest := featuresHeadFile(t, files, "data/default_credit_hetero_guest.csv", 2000, nil)
	env := map[string]string{"FEDRISK_FEATURE_VIEWS": views}
	common := []string{"--data-dir", dir}

	code, out, stderr := runFeatures(t, env, append([]string{"features", "load", "--view", "host_credit", "--file", host, "--batch-size", "500"}, common...)...)
	if code != 0 || !strings.Contains(out, "loaded 2000 rows into host_credit") || !strings.Contains(out, "20000 values written") {
		t.Fatalf("load: %d %q %q", code, out, stderr)
	}
	if !strings.Contains(stderr, "2000/2000 rows") {
		t.Errorf("no progress: %q", stderr)
	}
	// 25115 is the first row: x0 = 1.483795.
	code, out, stderr = runFeatures(t, env, append([]string{"features", "get", "--view", "host_credit", "--entity", "25115", "--feature", "x0,x9"}, common...)...)
	if code != 0 || !featuresMatch(out, `x0\s+1.483795\s+PRESENT\s+20`) || !featuresMatch(out, `x9\s+-1.530046\s+PRESENT`) {
		t.Errorf("get: %d %q %q", code, out, stderr)
	}
	code, out, _ = runFeatures(t, env, append([]string{"features", "get", "--view", "host_credit", "--entity", "no-such-id", "--feature", "x0"}, common...)...)
	if code != 0 || !featuresMatch(out, `x0\s+0\s+NOT_FOUND\s+-`) {
		t.Errorf("get unknown: %d %q", code, out)
	}

	// The guest file has a label column: refused, then skipped.
	args := append([]string{"features", "load", "--view", "guest_credit", "--file", guest}, common...)
	code, _, stderr = runFeatures(t, env, args...)
	if code != 1 || !strings.Contains(stderr, `line 1: column(s) "y" are not features of view guest_credit`) || !strings.Contains(stderr, "nothing was loaded") {
		t.Errorf("label column: %d %q", code, stderr)
	}
	code, out, stderr = runFeatures(t, env, append(args, "--ignore-columns", "y", "--quiet")...)
	if code != 0 || !strings.Contains(out, "loaded 2000 rows into guest_credit") || stderr != "" {
		t.Errorf("guest load: %d %q %q", code, out, stderr)
	}

	// A bad row: its line and column, one line on stderr, nothing loaded.
	bad := featuresHeadFile(t, t.TempDir(), "data/default_credit_hetero_host.csv", 1500, func(i int, line string) string {
		if i == 1 {
			return strings.Replace(line, "1.483795", "9.9", 1) // would change 25115
		}
		if i == 1400 {
			return strings.Replace(line, ",", ",oops", 3)
		}
		return line
	})
	code, _, stderr = runFeatures(t, env, append([]string{"features", "load", "--view", "host_credit", "--file", bad}, common...)...)
	if code != 1 || !strings.Contains(stderr, "line 1401, column x0: not a finite float64 number (nothing was loaded)") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("bad row: %d %q", code, stderr)
	}
	_, out, _ = runFeatures(t, env, append([]string{"features", "get", "--view", "host_credit", "--entity", "25115", "--feature", "x0"}, common...)...)
	if !strings.Contains(out, "1.483795") {
		t.Errorf("a file with a bad row changed a value: %q", out)
	}

	code, out, _ = runFeatures(t, env, "features", "views")
	if code != 0 || !featuresMatch(out, `host_credit\s+id\s+10\s+30d`) || !featuresMatch(out, `guest_credit\s+id\s+13\s+30d`) {
		t.Errorf("views: %d %q", code, out)
	}
	code, out, _ = runFeatures(t, env, "features", "views", "--view", "guest_credit")
	if code != 0 || !featuresMatch(out, `x12\s+float64\s+0\s+PAY_AMT6`) {
		t.Errorf("views --view: %d %q", code, out)
	}
}

func TestFeaturesCLIUsage(t *testing.T) {
	views := featurestest.RepoFile(t, "internal/features/examples/views.yaml")
	brokenViews := filepath.Join(t.TempDir(), "views.yaml")
	os.WriteFile(brokenViews, []byte("views:\n  - name: v\n    entity: id\n    features: [{name: x, type: float64}]\n"), 0o600)
	dir := t.TempDir()
	// The node's keys exist (as after its first start), so no command
	// below logs their creation.
	if code, _, stderr := runCLI(t, nil, "keys", "status", "--data-dir", dir); code != 0 {
		t.Fatal(stderr)
	}
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no views", nil, []string{"features", "load", "--view", "host_credit", "--file", "x.csv"}, 2, "--views FILE (or FEDRISK_FEATURE_VIEWS) is required"},
		{"broken views", nil, []string{"features", "views", "--views", brokenViews}, 2, `feature "x": default is required`},
		{"no view", nil, []string{"features", "load", "--views", views, "--file", "x.csv"}, 2, "--view is required"},
		{"unknown view", nil, []string{"features", "load", "--views", views, "--view", "nope", "--file", "x.csv"}, 2, `unknown feature view "nope" (defined: host_credit, guest_credit)`},
		{"no file", nil, []string{"features", "load", "--views", views, "--view", "host_credit"}, 2, "--file is required"},
		{"missing file", nil, []string{"features", "load", "--views", views, "--view", "host_credit", "--file", filepath.Join(dir, "none.csv"), "--data-dir", dir}, 1, "none.csv"},
		{"bad batch size", nil, []string{"features", "load", "--views", views, "--view", "host_credit", "--file", "x.csv", "--batch-size", "0"}, 2, "--batch-size"},
		{"bad entity", nil, []string{"features", "get", "--views", views, "--view", "host_credit", "--entity", " 1", "--data-dir", dir}, 2, "white space"},
		{"unknown feature", nil, []string{"features", "get", "--views", views, "--view", "host_credit", "--entity", "1", "--feature", "x99", "--data-dir", dir}, 2, `unknown feature "x99"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runFeatures(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d %q, want %d with %q", code, stderr, tc.code, tc.stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("want one clear line, got:\n%s", stderr)
			}
		})
	}
}

// TestFeaturesLoadInvalidatesRedis: the CLI deletes the cache entries a
// serving node put in the shared Redis under the node's prefix.
func TestFeaturesLoadInvalidatesRedis(t *testing.T) {
	url := os.Getenv(featurestest.RedisEnv)
	if url == "" {
		t.Skipf("%s not set", featurestest.RedisEnv)
	}
	party := "feat-" + strings.ToLower(strings.ReplaceAll(t.Name(), "_", ""))[:20]
	node, err := cache.NewRedis(context.Background(), url, cache.RedisOptions{Prefix: "fedrisk:" + party})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	key := features.CacheKey("host_credit", "25115")
	if err := node.Set(context.Background(), cache.UserFeatures(), key, []byte("cached"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Delete(context.Background(), cache.UserFeatures(), key) })
	host := featuresHeadFile(t, t.TempDir(), "data/default_credit_hetero_host.csv", 10, nil)
	env := map[string]string{"FEDRISK_FEATURE_VIEWS": featurestest.RepoFile(t, "internal/features/examples/views.yaml"), "REDIS_URL": url, "FEDRISK_PARTY": party}
	code, out, stderr := runFeatures(t, env, "features", "load", "--view", "host_credit", "--file", host, "--data-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "cache: 10 entries deleted") {
		t.Fatalf("%d %q %q", code, out, stderr)
	}
	if _, ok, err := node.Get(context.Background(), cache.UserFeatures(), key); err != nil || ok {
		t.Errorf("the node's entry survived the load: %v %v", ok, err)
	}
}

func featuresMatch(s, pattern string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// TestFeaturesLoadEntityRef loads a host's features under the subjects'
// references: found by href, not by the identifier.
func TestFeaturesLoadEntityRef(t *testing.T) {
	dir, files := t.TempDir(), t.TempDir()
	views := featurestest.RepoFile(t, "internal/features/examples/views.yaml")
	host := featuresHeadFile(t, files, "data/default_credit_hetero_host.csv", 50, nil)
	key := strings.Repeat("ab", 32)
	env := map[string]string{"FEDRISK_FEATURE_VIEWS": views}
	args := []string{"features", "load", "--view", "host_credit", "--file", host, "--entity-ref", "--party", "partner", "--data-dir", dir, "--quiet"}
	if code, _, stderr := runFeatures(t, env, args...); code != 2 || !strings.Contains(stderr, "FEDRISK_SUBJECT_REF_KEY") {
		t.Errorf("without a key: %d %q", code, stderr)
	}
	env["FEDRISK_SUBJECT_REF_KEY"] = key
	if code, out, stderr := runFeatures(t, env, args...); code != 0 || !strings.Contains(out, "loaded 50 rows") {
		t.Fatalf("load: %d %q %q", code, out, stderr)
	}
	k, _ := config.DecodeKey(key)
	href := consent.HostRef(k, "partner", "25115")
	get := func(entity string) string {
		_, out, _ := runFeatures(t, env, "features", "get", "--view", "host_credit", "--entity", entity, "--feature", "x0", "--data-dir", dir, "--party", "partner")
		return out
	}
	if out := get(href); !featuresMatch(out, `x0\s+1.483795\s+PRESENT`) {
		t.Errorf("by href: %q", out)
	}
	if out := get("25115"); !featuresMatch(out, `x0\s+0\s+NOT_FOUND`) {
		t.Errorf("the identifier itself must not be a key: %q", out)
	}
}
