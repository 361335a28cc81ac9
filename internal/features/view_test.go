package features

import (
	"bytes"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseViews(t *testing.T) {
	r, err := ParseViews([]byte(`
views:
  - name: accounts
    description: "per account: balances"
    entity: account_id
    ttl: 36h
    timestamp_column: as_of
    features:
      - {name: balance, type: float64, default: 0.5, description: last balance}
      - {name: months, type: int64, default: -1}
      - {name: segment, type: string, default: ""}
      - {name: vip, type: bool, default: true}
  - name: other
    entity: id
    ttl: 30d
    features:
      - {name: x, type: float64, default: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := r.View("accounts")
	if !ok || v.Entity != "account_id" || v.TTL != 36*time.Hour || v.TimestampColumn != "as_of" || v.Description != "per account: balances" {
		t.Fatalf("view %+v", v)
	}
	wantDefaults := []Value{Float64Value(0.5), Int64Value(-1), StringValue(""), BoolValue(true)}
	for i, f := range v.Features {
		if f.Default != wantDefaults[i] || f.Type != wantDefaults[i].Type() {
			t.Errorf("%s: %v %v", f.Name, f.Type, f.Default)
		}
	}
	if f, i, ok := v.Feature("segment"); !ok || i != 2 || f.Type != String {
		t.Errorf("Feature(segment) = %v %d %v", f, i, ok)
	}
	if _, _, ok := v.Feature("nope"); ok {
		t.Error("Feature(nope) found")
	}
	if o, _ := r.View("other"); o.TTL != 30*24*time.Hour || o.timestampColumn() != DefaultTimestampColumn {
		t.Errorf("other: %+v", o)
	}
	if names := []string{r.Views()[0].Name, r.Views()[1].Name}; names[0] != "accounts" || names[1] != "other" {
		t.Errorf("order %v", names)
	}
}

func TestParseViewsErrors(t *testing.T) {
	view := func(body string) string {
		return "views:\n  - name: v\n    entity: id\n" + body
	}
	feats := "    features:\n      - {name: x, type: float64, default: 0}\n"
	cases := map[string]struct{ yaml, msg string }{
		"empty":               {"", "empty"},
		"no views":            {"views: []\n", "no views"},
		"unknown key":         {view("    colour: red\n" + feats), "colour"},
		"unknown feature key": {view("    features:\n      - {name: x, type: float64, default: 0, unit: eur}\n"), "unit"},
		"two documents":       {view(feats) + "---\nviews: []\n", "one YAML document"},
		"bad view name":       {"views:\n  - name: 1v\n    entity: id\n" + feats, "view name"},
		"colon in name":       {"views:\n  - name: 'a:b'\n    entity: id\n" + feats, "view name"},
		"no entity":           {"views:\n  - name: v\n" + feats, "entity"},
		"no features":         {view(""), "no features"},
		"duplicate view":      {view(feats) + "  - name: v\n    entity: id\n" + feats, "defined twice"},
		"duplicate feature":   {view("    features:\n      - {name: x, type: float64, default: 0}\n      - {name: x, type: int64, default: 0}\n"), "defined twice"},
		"feature is entity":   {view("    features:\n      - {name: id, type: float64, default: 0}\n"), "name of the entity"},
		"feature is time":     {view("    features:\n      - {name: event_timestamp, type: float64, default: 0}\n"), "timestamp column"},
		"unknown type":        {view("    features:\n      - {name: x, type: decimal, default: 0}\n"), "decimal"},
		"no default":          {view("    features:\n      - {name: x, type: float64}\n"), "default is required"},
		"null default":        {view("    features:\n      - {name: x, type: float64, default: ~}\n"), "default is required"},
		"list default":        {view("    features:\n      - {name: x, type: float64, default: [1]}\n"), "default is required"},
		"NaN default":         {view("    features:\n      - {name: x, type: float64, default: .nan}\n"), "finite"},
		"string for int":      {view("    features:\n      - {name: x, type: int64, default: seven}\n"), "int64"},
		"bad bool":            {view("    features:\n      - {name: x, type: bool, default: maybe}\n"), "bool"},
		"negative ttl":        {view("    ttl: -1h\n" + feats), "ttl"},
		"bad ttl":             {view("    ttl: soon\n" + feats), "ttl"},
		"bad day ttl":         {view("    ttl: 1.5d\n" + feats), "days"},
		"not YAML":            {"views: [", "yaml"},
		"too large":           {strings.Repeat("#", MaxViewsFileBytes+1), "larger"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseViews([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalidView) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v, want ErrInvalidView mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestExampleViews keeps the example views (internal/features/examples)
// and the test views identical and valid.
func TestExampleViews(t *testing.T) {
	ex, err := os.ReadFile("examples/views.yaml")
	if err != nil {
		t.Fatal(err)
	}
	td, err := os.ReadFile("testdata/views.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ex, td) {
		t.Error("examples/views.yaml and testdata/views.yaml differ")
	}
	r, err := LoadViews("examples/views.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"host_credit": 10, "guest_credit": 13} {
		v, ok := r.View(name)
		if !ok || len(v.Features) != n || v.Entity != "id" {
			t.Errorf("%s: %+v", name, v)
		}
	}
	if _, err := LoadViews("testdata/nope.yaml"); err == nil {
		t.Error("missing file accepted")
	}
}

func TestParseRef(t *testing.T) {
	if r, err := ParseRef("host_credit:x0"); err != nil || r != (Ref{"host_credit", "x0"}) || r.String() != "host_credit:x0" {
		t.Errorf("%v %v", r, err)
	}
	for _, s := range []string{"", "host_credit", "host_credit:", ":x0", "a:b:c", "a b:c", "a:b c", "é:x"} {
		if _, err := ParseRef(s); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestValues(t *testing.T) {
	cases := []struct {
		t    ValueType
		in   string
		want Value
		text string
	}{
		{Float64, "1.483795", Float64Value(1.483795), "1.483795"},
		{Float64, " -2.5e3 ", Float64Value(-2500), "-2500"},
		{Float64, "0.1", Float64Value(0.1), "0.1"},
		{Int64, "9223372036854775807", Int64Value(math.MaxInt64), "9223372036854775807"},
		{Int64, "-12", Int64Value(-12), "-12"},
		{Bool, "TRUE", BoolValue(true), "true"},
		{Bool, "0", BoolValue(false), "false"},
		{String, " as is ", StringValue(" as is "), " as is "},
		{String, "", StringValue(""), ""},
	}
	for _, tc := range cases {
		v, err := ParseValue(tc.t, tc.in)
		if err != nil || v != tc.want || v.String() != tc.text {
			t.Errorf("%s %q: %v %q %v", tc.t, tc.in, v, v.String(), err)
			continue
		}
		back, err := ParseValue(tc.t, v.String())
		if err != nil || back != v {
			t.Errorf("%s %q does not round-trip: %v", tc.t, tc.in, err)
		}
	}
	for _, tc := range []struct {
		t  ValueType
		in string
	}{
		{Float64, "NaN"}, {Float64, "+Inf"}, {Float64, "1e400"}, {Float64, ""}, {Float64, "1,5"},
		{Int64, "1.0"}, {Int64, "9223372036854775808"}, {Bool, "yes"}, {String, "a\x00b"}, {String, "\xff"},
		{String, strings.Repeat("s", MaxStringLen+1)}, {0, "1"},
	} {
		if _, err := ParseValue(tc.t, tc.in); err == nil {
			t.Errorf("%s %q accepted", tc.t, tc.in)
		} else if len(tc.in) > 2 && strings.Contains(err.Error(), tc.in) {
			t.Errorf("the error quotes the value: %v", err)
		}
	}
	if b, _ := StringValue(`a"b`).MarshalJSON(); string(b) != `"a\"b"` {
		t.Errorf("json %s", b)
	}
	if _, err := Float64Value(math.Inf(1)).MarshalJSON(); err == nil {
		t.Error("Inf marshalled")
	}
	if f, ok := BoolValue(true).AsFloat64(); !ok || f != 1 {
		t.Error("bool as float")
	}
	if _, ok := StringValue("1").AsFloat64(); ok {
		t.Error("string as float")
	}
}

func TestEntry(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	vals := []StoredValue{{"x0", "1.5", at}, {"name", "客户 🙂", at.Add(-time.Hour)}, {"b", "", time.UnixMicro(0).UTC()}}
	for _, in := range [][]StoredValue{nil, vals} {
		gen, out, err := decodeEntry(encodeEntry(42, in))
		if err != nil || gen != 42 || len(out) != len(in) || (len(in) > 0 && !reflect.DeepEqual(out, in)) {
			t.Errorf("round trip: %d %v %v", gen, out, err)
		}
	}
	enc := encodeEntry(7, vals)
	for i := range enc {
		if _, _, err := decodeEntry(enc[:i]); err == nil {
			t.Errorf("truncated entry (%d of %d bytes) accepted", i, len(enc))
		}
	}
	if _, _, err := decodeEntry(append(enc, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestCacheKey(t *testing.T) {
	k := CacheKey("host_credit", "25115")
	if !strings.HasPrefix(k, "host_credit:") || strings.Contains(k, "25115") || k == CacheKey("host_credit", "25116") || k == CacheKey("guest_credit", "25115") {
		t.Errorf("key %q", k)
	}
}

func TestParseEventTime(t *testing.T) {
	want := time.Date(2025, 6, 1, 10, 30, 0, 0, time.UTC)
	for _, s := range []string{"2025-06-01T10:30:00Z", "2025-06-01T12:30:00+02:00", "2025-06-01 10:30:00", "2025-06-01 10:30:00.000000+00:00", "1748773800"} {
		if got, err := parseEventTime(s); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	if got, _ := parseEventTime("2025-06-01T10:30:00.1234567Z"); got.Nanosecond() != 123456000 {
		t.Errorf("not truncated to microseconds: %v", got)
	}
	if got, err := parseEventTime("2025-06-01"); err != nil || !got.Equal(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date: %v %v", got, err)
	}
	for _, s := range []string{"", "yesterday", "-5", "1969-12-31T23:59:59Z", "2025-13-01"} {
		if _, err := parseEventTime(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
