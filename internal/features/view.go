package features

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits of view definitions.
const (
	MaxViewsFileBytes  = 1 << 20
	MaxViews           = 1000
	MaxFeaturesPerView = 1000
	MaxDescriptionLen  = 1024
)

// DefaultTimestampColumn is the CSV column read as the event time when a
// view does not name another (Feast's convention).
const DefaultTimestampColumn = "event_timestamp"

// Feature is one feature of a view.
type Feature struct {
	Name        string
	Type        ValueType
	Default     Value // served, flagged, when the entity has no (fresh) value
	Description string
}

// View is a feature view: features of one kind of entity, loaded together.
type View struct {
	Name        string
	Entity      string        // entity key name: the CSV column and the request's entity key
	TTL         time.Duration // max age of a value; 0: values never get too old
	Description string
	// TimestampColumn is the CSV column holding the event time
	// (DefaultTimestampColumn when empty).
	TimestampColumn string
	Features        []Feature

	index map[string]int
}

// Feature returns the named feature and its position.
func (v *View) Feature(name string) (Feature, int, bool) {
	i, ok := v.index[name]
	if !ok {
		return Feature{}, -1, false
	}
	return v.Features[i], i, true
}

// FeatureNames returns the names of the view's features, in definition order.
func (v *View) FeatureNames() []string {
	names := make([]string, len(v.Features))
	for i, f := range v.Features {
		names[i] = f.Name
	}
	return names
}

func (v *View) timestampColumn() string {
	if v.TimestampColumn == "" {
		return DefaultTimestampColumn
	}
	return v.TimestampColumn
}

// Registry is an immutable set of views, safe for concurrent use.
type Registry struct {
	views  []*View
	byName map[string]*View
}

// View returns the named view. The View must not be modified.
func (r *Registry) View(name string) (*View, bool) {
	v, ok := r.byName[name]
	return v, ok
}

// Views returns the views in definition order. They must not be modified.
func (r *Registry) Views() []*View { return r.views }

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// NewRegistry validates views and returns them as a registry: names are
// 1..64 letters, digits and underscores (not starting with a digit), view
// names unique, feature names unique within a view and distinct from the
// entity and timestamp columns, types known, defaults of the feature's
// type, TTLs not negative.
func NewRegistry(views ...View) (*Registry, error) {
	if len(views) > MaxViews {
		return nil, fmt.Errorf("%w: more than %d views", ErrInvalidView, MaxViews)
	}
	r := &Registry{byName: make(map[string]*View, len(views))}
	for i := range views {
		v := views[i]
		if err := v.validate(); err != nil {
			return nil, err
		}
		if _, dup := r.byName[v.Name]; dup {
			return nil, fmt.Errorf("%w: view %q is defined twice", ErrInvalidView, v.Name)
		}
		v.Features = append([]Feature(nil), v.Features...)
		v.index = make(map[string]int, len(v.Features))
		for j, f := range v.Features {
			v.index[f.Name] = j
		}
		r.views = append(r.views, &v)
		r.byName[v.Name] = &v
	}
	return r, nil
}

func (v *View) validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: view %q: %s", ErrInvalidView, v.Name, fmt.Sprintf(format, args...))
	}
	if !validName(v.Name) {
		return fmt.Errorf("%w: view name %q must be 1..64 letters, digits or underscores, not starting with a digit", ErrInvalidView, v.Name)
	}
	if !validName(v.Entity) {
		return fail("entity %q must be 1..64 letters, digits or underscores, not starting with a digit", v.Entity)
	}
	if v.TimestampColumn != "" && !validName(v.TimestampColumn) {
		return fail("timestamp_column %q must be 1..64 letters, digits or underscores", v.TimestampColumn)
	}
	if v.timestampColumn() == v.Entity {
		return fail("the timestamp column and the entity are both %q", v.Entity)
	}
	if v.TTL < 0 {
		return fail("ttl must not be negative")
	}
	if err := validText(v.Description); err != nil {
		return fail("description %v", err)
	}
	if len(v.Features) == 0 {
		return fail("it has no features")
	}
	if len(v.Features) > MaxFeaturesPerView {
		return fail("more than %d features", MaxFeaturesPerView)
	}
	seen := make(map[string]bool, len(v.Features))
	for _, f := range v.Features {
		switch {
		case !validName(f.Name):
			return fail("feature name %q must be 1..64 letters, digits or underscores, not starting with a digit", f.Name)
		case seen[f.Name]:
			return fail("feature %q is defined twice", f.Name)
		case f.Name == v.Entity:
			return fail("feature %q has the name of the entity", f.Name)
		case f.Name == v.timestampColumn():
			return fail("feature %q has the name of the timestamp column", f.Name)
		case f.Type < Float64 || f.Type > Bool:
			return fail("feature %q has no valid type", f.Name)
		case f.Default.Type() != f.Type:
			return fail("feature %q: the default must be a %s", f.Name, f.Type)
		}
		if _, err := ParseValue(f.Type, f.Default.String()); err != nil {
			return fail("feature %q: default: %v", f.Name, err)
		}
		if err := validText(f.Description); err != nil {
			return fail("feature %q: description %v", f.Name, err)
		}
		seen[f.Name] = true
	}
	return nil
}

func validText(s string) error {
	if len(s) > MaxDescriptionLen {
		return fmt.Errorf("is longer than %d bytes", MaxDescriptionLen)
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return errors.New("is not valid UTF-8 text")
	}
	return nil
}

// The YAML shape of a views file.
type yamlFile struct {
	Views []yamlView `yaml:"views"`
}

type yamlView struct {
	Name            string        `yaml:"name"`
	Description     string        `yaml:"description"`
	Entity          string        `yaml:"entity"`
	TTL             string        `yaml:"ttl"`
	TimestampColumn string        `yaml:"timestamp_column"`
	Features        []yamlFeature `yaml:"features"`
}

type yamlFeature struct {
	Name        string    `yaml:"name"`
	Type        string    `yaml:"type"`
	Default     yaml.Node `yaml:"default"`
	Description string    `yaml:"description"`
}

// ParseViews reads a views file (YAML):
//
//	views:
//	  - name: host_credit
//	    description: ...
//	    entity: id                    # entity key: CSV column, request key
//	    ttl: 720h                     # max age: Go duration or days ("30d"); 0 or absent: none
//	    timestamp_column: event_timestamp   # optional, this is the default
//	    features:
//	      - name: x0
//	        type: float64             # float64, int64, string or bool
//	        default: 0                # required: served when the value is missing or too old
//	        description: ...
//
// Unknown keys are errors, so a misspelt key never silently drops a setting.
func ParseViews(data []byte) (*Registry, error) {
	if len(data) > MaxViewsFileBytes {
		return nil, fmt.Errorf("%w: views file larger than %d bytes", ErrInvalidView, MaxViewsFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f yamlFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the views file is empty", ErrInvalidView)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidView, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: the views file must hold one YAML document", ErrInvalidView)
	}
	if len(f.Views) == 0 {
		return nil, fmt.Errorf("%w: no views defined (want a top-level views: list)", ErrInvalidView)
	}
	if len(f.Views) > MaxViews {
		return nil, fmt.Errorf("%w: more than %d views", ErrInvalidView, MaxViews)
	}
	views := make([]View, 0, len(f.Views))
	for _, yv := range f.Views {
		v := View{Name: yv.Name, Entity: yv.Entity, Description: yv.Description, TimestampColumn: yv.TimestampColumn}
		ttl, err := parseTTL(yv.TTL)
		if err != nil {
			return nil, fmt.Errorf("%w: view %q: ttl: %v", ErrInvalidView, yv.Name, err)
		}
		v.TTL = ttl
		if len(yv.Features) > MaxFeaturesPerView {
			return nil, fmt.Errorf("%w: view %q: more than %d features", ErrInvalidView, yv.Name, MaxFeaturesPerView)
		}
		for _, yf := range yv.Features {
			t, err := ParseValueType(yf.Type)
			if err != nil {
				return nil, fmt.Errorf("%w: view %q: feature %q: %v", ErrInvalidView, yv.Name, yf.Name, err)
			}
			if yf.Default.Kind != yaml.ScalarNode || yf.Default.Tag == "!!null" {
				return nil, fmt.Errorf("%w: view %q: feature %q: default is required (a %s: the value served when the entity has none)", ErrInvalidView, yv.Name, yf.Name, t)
			}
			def, err := ParseValue(t, yf.Default.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: view %q: feature %q: default: %v", ErrInvalidView, yv.Name, yf.Name, err)
			}
			v.Features = append(v.Features, Feature{Name: yf.Name, Type: t, Default: def, Description: yf.Description})
		}
		views = append(views, v)
	}
	return NewRegistry(views...)
}

// LoadViews reads and parses a views file.
func LoadViews(path string) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read views: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxViewsFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read views %s: %w", path, err)
	}
	r, err := ParseViews(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// parseTTL accepts "", "0", a Go duration ("720h", "90m") or whole days ("30d").
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q is not a number of days (0..36500)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 720h or 30d", s)
	}
	return dur, nil
}

// Ref names one feature of one view, written "view:feature" as in Feast.
type Ref struct {
	View, Feature string
}

func (r Ref) String() string { return r.View + ":" + r.Feature }

// ParseRef parses "view:feature". It checks the syntax only; whether the
// view and feature exist is the store's business.
func ParseRef(s string) (Ref, error) {
	view, feature, ok := strings.Cut(s, ":")
	if !ok || !validName(view) || !validName(feature) {
		return Ref{}, fmt.Errorf("%w: want view:feature with names of letters, digits and underscores", ErrInvalidRef)
	}
	return Ref{View: view, Feature: feature}, nil
}
