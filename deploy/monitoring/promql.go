package monitoring

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/prometheus/promql/parser"
)

// TargetLabels are on every scraped series: job and instance from
// Prometheus, party from the static labels prometheus.yml gives each
// target (its comments and README.md ask for one per node).
var TargetLabels = []string{"instance", "job", "party"}

// OptionalLabels are on scraped series in some deployments only
// (Kubernetes service discovery adds them). An expression may drop them
// with without() or ignoring(), but may not rely on them.
var OptionalLabels = []string{"container", "endpoint", "namespace", "pod"}

// Use is one metric an expression selects.
type Use struct {
	Metric   string
	Family   Family // zero for a recorded series
	Recorded bool
}

// Checker checks PromQL expressions against a catalogue and the series
// recorded by recording rules.
type Checker struct {
	Catalogue *Catalogue
	// Recorded maps each series a recording rule writes to its labels
	// (Record adds them).
	Recorded map[string][]string
}

// NewChecker returns a checker for cat with no recorded series yet.
func NewChecker(cat *Catalogue) *Checker {
	return &Checker{Catalogue: cat, Recorded: map[string][]string{}}
}

// Record checks a recording rule's expression and adds the series it
// records, with the labels the expression leaves on its result.
func (c *Checker) Record(name, expr string) error {
	labels, _, err := c.Check(expr)
	if err != nil {
		return err
	}
	if _, _, ok := c.Catalogue.Series(name); ok {
		return fmt.Errorf("recording rule %s: the name is already an exported metric", name)
	}
	c.Recorded[name] = labels
	return nil
}

// Check parses expr and returns the label names of its result (sorted)
// and the metrics it selects. The error lists every metric that is neither
// in the catalogue nor recorded, and every label the expression relies on
// (in a matcher, by(), on(), group_left/right() or a function argument)
// that its input does not have.
func (c *Checker) Check(expr string) ([]string, []Use, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}
	w := &walker{c: c}
	out, _ := w.walk(e)
	return sortedKeys(out), w.uses, errors.Join(w.errs...)
}

type lset map[string]bool

func sortedKeys(s lset) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type walker struct {
	c    *Checker
	uses []Use
	errs []error
}

func (w *walker) errorf(format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf(format, args...))
}

// need reports each of names that in lacks.
func (w *walker) need(in lset, names []string, what string) {
	for _, n := range names {
		if !in[n] {
			w.errorf("%s uses label %q, which its input does not have (labels %v)", what, n, sortedKeys(in))
		}
	}
}

// mayDrop reports each of names that is neither on in nor an optional label.
func (w *walker) mayDrop(in lset, names []string, what string) {
	for _, n := range names {
		if !in[n] && !slices.Contains(OptionalLabels, n) {
			w.errorf("%s names label %q, which its input does not have (labels %v)", what, n, sortedKeys(in))
		}
	}
}

// walk returns the label names of n's result and whether it is a vector
// (instant or range) rather than a scalar or string.
func (w *walker) walk(n parser.Node) (lset, bool) {
	switch n := n.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return lset{}, false
	case *parser.ParenExpr:
		return w.walk(n.Expr)
	case *parser.UnaryExpr:
		return w.walk(n.Expr)
	case *parser.StepInvariantExpr:
		return w.walk(n.Expr)
	case *parser.SubqueryExpr:
		return w.walk(n.Expr)
	case *parser.MatrixSelector:
		return w.walk(n.VectorSelector)
	case *parser.VectorSelector:
		return w.selector(n), true
	case *parser.Call:
		return w.call(n)
	case *parser.AggregateExpr:
		return w.aggregate(n), true
	case *parser.BinaryExpr:
		return w.binary(n)
	}
	w.errorf("unsupported expression %T: %s", n, n)
	return lset{}, true
}

func (w *walker) selector(vs *parser.VectorSelector) lset {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == "__name__" && name == "" {
			name = m.Value
		}
	}
	out := lset{}
	if labels, ok := w.c.Recorded[name]; ok {
		w.uses = append(w.uses, Use{Metric: name, Recorded: true})
		for _, l := range labels {
			out[l] = true
		}
	} else if f, labels, ok := w.c.Catalogue.Series(name); ok {
		w.uses = append(w.uses, Use{Metric: name, Family: f})
		for _, l := range TargetLabels {
			out[l] = true
		}
		for _, l := range labels {
			out[l] = true
		}
	} else {
		w.errorf("metric %q is neither exported by a fedrisk node (metrics.txt) nor by a listed exporter (exporter_metrics.txt) nor recorded by a rule", name)
		return out
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" && !out[m.Name] {
			w.errorf("selector %s matches on label %q, which %s does not have (labels %v)", vs, m.Name, name, sortedKeys(out))
		}
	}
	return out
}

func (w *walker) call(c *parser.Call) (lset, bool) {
	var args []lset
	var vec []bool
	for _, a := range c.Args {
		l, v := w.walk(a)
		args = append(args, l)
		vec = append(vec, v)
	}
	str := func(i int) string {
		if i < len(c.Args) {
			if s, ok := c.Args[i].(*parser.StringLiteral); ok {
				return s.Val
			}
		}
		return ""
	}
	first := func() lset {
		for i, v := range vec {
			if v {
				return maps.Clone(args[i])
			}
		}
		return lset{}
	}
	switch c.Func.Name {
	case "scalar", "time", "pi":
		return lset{}, false
	case "vector", "absent", "absent_over_time":
		return lset{}, true
	case "histogram_quantile":
		in := first()
		w.need(in, []string{"le"}, "histogram_quantile")
		delete(in, "le")
		return in, true
	case "label_replace":
		in := first()
		if src := str(3); src != "" {
			w.need(in, []string{src}, "label_replace")
		}
		in[str(1)] = true
		return in, true
	case "label_join":
		in := first()
		for i := 3; i < len(c.Args); i++ {
			w.need(in, []string{str(i)}, "label_join")
		}
		in[str(1)] = true
		return in, true
	}
	if c.Func.ReturnType == parser.ValueTypeScalar {
		return lset{}, false
	}
	return first(), true
}

func (w *walker) aggregate(a *parser.AggregateExpr) lset {
	in, _ := w.walk(a.Expr)
	if a.Param != nil {
		w.walk(a.Param)
	}
	what := a.Op.String()
	if a.Without {
		w.mayDrop(in, a.Grouping, what+" without()")
	} else {
		w.need(in, a.Grouping, what+" by()")
	}
	switch a.Op {
	case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
		return in
	}
	var out lset
	if a.Without {
		out = maps.Clone(in)
		for _, g := range a.Grouping {
			delete(out, g)
		}
	} else {
		out = lset{}
		for _, g := range a.Grouping {
			out[g] = true
		}
	}
	if a.Op == parser.COUNT_VALUES {
		if s, ok := a.Param.(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
	}
	return out
}

func (w *walker) binary(b *parser.BinaryExpr) (lset, bool) {
	l, lv := w.walk(b.LHS)
	r, rv := w.walk(b.RHS)
	switch {
	case !lv && !rv:
		return lset{}, false
	case !rv:
		return l, true
	case !lv:
		return r, true
	}
	m := b.VectorMatching
	if m == nil {
		m = &parser.VectorMatching{}
	}
	what := b.Op.String()
	if m.On {
		w.need(l, m.MatchingLabels, what+" on() (left side)")
		w.need(r, m.MatchingLabels, what+" on() (right side)")
	} else {
		w.mayDrop(union(l, r), m.MatchingLabels, what+" ignoring()")
	}
	switch b.Op {
	case parser.LAND, parser.LUNLESS:
		return l, true
	case parser.LOR:
		return union(l, r), true
	}
	switch m.Card {
	case parser.CardManyToOne:
		w.need(r, m.Include, what+" group_left()")
		out := maps.Clone(l)
		for _, i := range m.Include {
			out[i] = true
		}
		return out, true
	case parser.CardOneToMany:
		w.need(l, m.Include, what+" group_right()")
		out := maps.Clone(r)
		for _, i := range m.Include {
			out[i] = true
		}
		return out, true
	}
	if m.On {
		out := lset{}
		for _, k := range m.MatchingLabels {
			out[k] = true
		}
		return out, true
	}
	out := maps.Clone(l)
	for _, k := range m.MatchingLabels {
		delete(out, k)
	}
	return out, true
}

func union(a, b lset) lset {
	out := maps.Clone(a)
	for k := range b {
		out[k] = true
	}
	return out
}
