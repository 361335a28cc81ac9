package fedrisk_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fedrisk/fedrisk"

// The layers a package belongs to, by its name (DEVELOP.md, "Layout"):
// domain <d>, transport <d>api, wiring <d>node, SQL adapter sql<d>,
// conformance suite <d>test. Infrastructure packages are named here.
type layer int

const (
	domain    layer = iota
	transport       // <d>api, and the HTTP conventions every API shares
	adapter         // sql<d>
	wiring          // <d>node
	root            // internal/node: the composition root
	suite           // <d>test: test helpers and conformance suites
	infra           // shared plumbing: database, cache, configuration, TLS
	app             // commands and the demo: may use everything
)

var infraPackages = map[string]layer{
	"internal/web":           transport,
	"internal/auth/authhttp": transport,
	"internal/apiclient":     transport,
	// the health check's probes: HTTP, PostgreSQL and Redis clients built
	// from the configuration (a client transport)
	"internal/health/healthprobe": transport,
	"internal/sqldb":              infra,
	"internal/config":             infra,
	"internal/cache":              infra,
	"internal/pki":                infra,
	"internal/metrics":            infra,
	"internal/testclock":          suite,
	"internal/node":               root,
	"internal/demo":               app,
	"data":                        infra,
	"internal/node/nodetest":      suite,
	"internal/sqldb/sqldbtest":    suite,
	"internal/cache/cachetest":    suite,
	"internal/features/examples":  infra,
}

func layerOf(pkg string) layer {
	if l, ok := infraPackages[pkg]; ok {
		return l
	}
	if strings.HasPrefix(pkg, "cmd/") || pkg == "." {
		return app
	}
	name := path.Base(pkg)
	switch {
	case strings.HasSuffix(name, "api"):
		return transport
	case strings.HasPrefix(name, "sql"):
		return adapter
	case strings.HasSuffix(name, "node"):
		return wiring
	case strings.HasSuffix(name, "test"):
		return suite
	}
	return domain
}

// forbidden lists what a package of each layer may not import. The
// standard library's net/http is forbidden to domain packages only.
func forbidden(from string, imp string) string {
	lf := layerOf(from)
	if !strings.HasPrefix(imp, module+"/") && imp != module {
		if lf == domain && (imp == "net/http" || strings.HasPrefix(imp, "net/http/")) {
			return "a domain package imports " + imp + ": HTTP belongs in its <d>api transport"
		}
		return ""
	}
	to := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
	lt := layerOf(to)
	switch {
	case lt == wiring && lf != root && lf != app && lf != suite:
		return "only internal/node, cmd and the demo assemble services: " + to + " is wiring"
	case lt == root && lf != app && lf != suite && lf != wiring:
		return to + " is the composition root: only commands, the demo and test helpers use it"
	case to == "internal/keys/sqlkeys" && lf != root && !strings.HasPrefix(from, "internal/keys"):
		return "the key manager is opened once per process, by internal/node (node.Open): do not build one from keys/sqlkeys"
	}
	if lf == domain {
		switch {
		case to == "internal/sqldb" || to == "internal/config":
			return "a domain package imports " + to + ": take what it needs as values or small interfaces"
		case lt == transport:
			return "a domain package imports the transport " + to
		case lt == adapter:
			return "a domain package imports the adapter " + to + ": own a small interface instead"
		}
	}
	if lf == adapter && (lt == transport || lt == wiring) {
		return "an SQL adapter imports " + to
	}
	if lf == transport && lt == adapter {
		return "a transport imports the adapter " + to + ": the wiring hands it the domain"
	}
	return ""
}

// imports reads the non-test imports of every package of the module under
// dir, keyed by their path relative to the module.
func imports(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && p != dir {
				return filepath.SkipDir // another module (deploy/)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		for _, s := range f.Imports {
			imp, _ := strconv.Unquote(s.Path.Value)
			if !slices.Contains(out[pkg], imp) {
				out[pkg] = append(out[pkg], imp)
			}
		}
		if out[pkg] == nil {
			out[pkg] = []string{}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func violations(pkgs map[string][]string) []string {
	var out []string
	for from, imps := range pkgs {
		for _, imp := range imps {
			if why := forbidden(from, imp); why != "" {
				out = append(out, from+" → "+imp+": "+why)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestLayering enforces the layout DEVELOP.md describes (model: tailscale's
// tstest/deptest): domain packages free of HTTP, SQL and configuration,
// services assembled only by the composition root, one key manager.
func TestLayering(t *testing.T) {
	pkgs := imports(t, ".")
	if len(pkgs) < 30 {
		t.Fatalf("found only %d packages: is the walk broken?", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestLayeringChecker shows the checker fails on the imports it forbids.
func TestLayeringChecker(t *testing.T) {
	bad := map[string][]string{
		"internal/consent":              {"net/http"},
		"internal/psi/psijob":           {module + "/internal/psi/sqlpsi"},
		"internal/training/trainjob":    {module + "/internal/config"},
		"internal/serving/servingnode":  {module + "/internal/consent/consentnode"},
		"internal/psi/psinode":          {module + "/internal/keys/sqlkeys"},
		"internal/features":             {module + "/internal/web"},
		"internal/consent/sqlconsent":   {module + "/internal/consent/consentapi"},
		"internal/serving/servingapi":   {module + "/internal/node"},
		"internal/privacy/sqlprivacy":   {module + "/internal/sqldb"},
		"internal/consent/consentnode":  {module + "/internal/consent/consentapi"},
		"internal/node":                 {module + "/internal/consent/consentnode", module + "/internal/keys/sqlkeys"},
		"cmd/fedrisk":                   {module + "/internal/node", module + "/internal/psi/psinode"},
		"internal/training/trainjobapi": {"net/http", module + "/internal/training/trainjob"},
	}
	got := violations(bad)
	want := []string{
		"internal/consent → net/http",
		"internal/features → " + module + "/internal/web",
		"internal/psi/psijob → " + module + "/internal/psi/sqlpsi",
		"internal/psi/psinode → " + module + "/internal/keys/sqlkeys",
		"internal/serving/servingapi → " + module + "/internal/node",
		"internal/serving/servingnode → " + module + "/internal/consent/consentnode",
		"internal/training/trainjob → " + module + "/internal/config",
		"internal/consent/sqlconsent → " + module + "/internal/consent/consentapi",
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w+":") }) {
			t.Errorf("the checker let %s pass", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the checker found %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}
