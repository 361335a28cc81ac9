package monitoring

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Family is one metric family a scrape target exports.
type Family struct {
	Name   string
	Type   string   // counter, gauge, histogram, summary or untyped
	Labels []string // the family's own label names, sorted
	Job    string   // the exporter's scrape job; "" for fedrisk's own metrics and up
	When   string   // "" always exported; "redis": only with a Redis cache
}

// Catalogue is every metric family the rules and dashboards may select.
type Catalogue struct {
	families map[string]Family
}

var familyTypes = []string{"counter", "gauge", "histogram", "summary", "untyped"}

// ReadCatalogue reads fedrisk's catalogue (lines NAME TYPE LABELS [WHEN])
// and the exporters' (lines JOB NAME TYPE LABELS). Prometheus's own `up`
// is added for every job.
func ReadCatalogue(fedriskFile, exporterFile string) (*Catalogue, error) {
	c := &Catalogue{families: map[string]Family{
		"up": {Name: "up", Type: "gauge"},
	}}
	add := func(f Family, where string) error {
		if !slices.Contains(familyTypes, f.Type) {
			return fmt.Errorf("%s: %s has unknown type %q", where, f.Name, f.Type)
		}
		if _, dup := c.families[f.Name]; dup {
			return fmt.Errorf("%s: %s is listed twice", where, f.Name)
		}
		c.families[f.Name] = f
		return nil
	}
	err := readLines(fedriskFile, func(where string, fields []string) error {
		if len(fields) < 3 || len(fields) > 4 {
			return fmt.Errorf("%s: want NAME TYPE LABELS [WHEN], got %q", where, strings.Join(fields, " "))
		}
		f := Family{Name: fields[0], Type: fields[1], Labels: splitLabels(fields[2])}
		if len(fields) == 4 {
			f.When = fields[3]
		}
		return add(f, where)
	})
	if err != nil {
		return nil, err
	}
	err = readLines(exporterFile, func(where string, fields []string) error {
		if len(fields) != 4 {
			return fmt.Errorf("%s: want JOB NAME TYPE LABELS, got %q", where, strings.Join(fields, " "))
		}
		return add(Family{Job: fields[0], Name: fields[1], Type: fields[2], Labels: splitLabels(fields[3])}, where)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ReadExporterCatalogue reads only the exporters' catalogue.
func ReadExporterCatalogue(path string) ([]Family, error) {
	var out []Family
	err := readLines(path, func(where string, fields []string) error {
		if len(fields) != 4 {
			return fmt.Errorf("%s: want JOB NAME TYPE LABELS, got %q", where, strings.Join(fields, " "))
		}
		out = append(out, Family{Job: fields[0], Name: fields[1], Type: fields[2], Labels: splitLabels(fields[3])})
		return nil
	})
	return out, err
}

func splitLabels(s string) []string {
	if s == "-" {
		return nil
	}
	l := strings.Split(s, ",")
	slices.Sort(l)
	return l
}

func readLines(path string, fn func(where string, fields []string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(fmt.Sprintf("%s:%d", path, n), strings.Fields(line)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Families returns every family of the catalogue, sorted by name.
func (c *Catalogue) Families() []Family {
	out := make([]Family, 0, len(c.families))
	for _, f := range c.families {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Series finds the family a series name belongs to and the label names
// that series has (the family's own, plus le on a histogram's _bucket and
// quantile on a summary's samples).
func (c *Catalogue) Series(name string) (Family, []string, bool) {
	if f, ok := c.families[name]; ok && f.Type != "histogram" {
		labels := slices.Clone(f.Labels)
		if f.Type == "summary" {
			labels = append(labels, "quantile")
		}
		return f, labels, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := c.families[base]
		if !ok || (f.Type != "histogram" && f.Type != "summary") || (suffix == "_bucket" && f.Type != "histogram") {
			continue
		}
		labels := slices.Clone(f.Labels)
		if suffix == "_bucket" {
			labels = append(labels, "le")
		}
		return f, labels, true
	}
	return Family{}, nil, false
}
