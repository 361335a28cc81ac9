package monitoring

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// RuleFile is one parsed Prometheus rule file.
type RuleFile struct {
	Path   string
	Groups []rulefmt.RuleGroup
}

// ReadRuleFiles parses every *_rules.yml of dir, in name order, with
// Prometheus's own rule file parser (which also parses each expression and
// annotation template, as `promtool check rules` does).
func ReadRuleFiles(dir string) ([]RuleFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*_rules.yml"))
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	var out []RuleFile
	for _, p := range paths {
		rgs, errs := rulefmt.ParseFile(p, false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %w", p, errors.Join(errs...))
		}
		out = append(out, RuleFile{Path: p, Groups: rgs.Groups})
	}
	return out, nil
}

// RecordAll checks the recording rules of files and adds the series they
// record to c, each after the recorded series its expression reads.
func (c *Checker) RecordAll(files []RuleFile) error {
	type rec struct{ where, name, expr string }
	var pending []rec
	for _, f := range files {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					pending = append(pending, rec{f.Path + " group " + g.Name, r.Record, r.Expr})
				}
			}
		}
	}
	var errs []error
	for len(pending) > 0 {
		var later []rec
		for _, r := range pending {
			if slices.ContainsFunc(pending, func(o rec) bool { return o.name != r.name && reads(r.expr, o.name) }) {
				later = append(later, r)
				continue
			}
			if err := c.Record(r.name, r.expr); err != nil {
				errs = append(errs, fmt.Errorf("%s: record %s: %w", r.where, r.name, err))
				c.Recorded[r.name] = nil // known, so its readers are checked too
			}
		}
		if len(later) == len(pending) {
			for _, r := range later {
				errs = append(errs, fmt.Errorf("%s: record %s: depends on a recording rule in a cycle", r.where, r.name))
			}
			break
		}
		pending = later
	}
	return errors.Join(errs...)
}

// reads reports whether expr selects the series name.
func reads(expr, name string) bool {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return false
	}
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name == name {
			found = true
		}
		return nil
	})
	return found
}
