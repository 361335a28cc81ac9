package fedrisk_test

import (
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxSummaryWords bounds a package's one-sentence summary.
const maxSummaryWords = 45

// TestEveryPackageHasADocComment keeps the layout easy to read: each
// package says what it is for in a doc comment.
func TestEveryPackageHasADocComment(t *testing.T) {
	dirs := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %d packages: is the walk broken?", len(dirs))
	}
	for dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		documented := false
		var synopsis string
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
				documented = true
				synopsis = new(doc.Package).Synopsis(f.Doc.Text())
				break
			}
		}
		if !documented {
			t.Errorf("package in %s has no doc comment", dir)
			continue
		}
		// The summary `go list -f '{{.Doc}}'` and pkg.go.dev show is the
		// first sentence: it must be one, end with a period and be short.
		if words := len(strings.Fields(synopsis)); !strings.HasSuffix(synopsis, ".") || words < 5 || words > maxSummaryWords ||
			strings.Count(synopsis, "(") != strings.Count(synopsis, ")") {
			t.Errorf("package in %s: summary %q (%d words) must be one whole sentence of 5..%d words ending in a period", dir, synopsis, words, maxSummaryWords)
		}
	}
}
