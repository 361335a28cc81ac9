package features

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
	"time"
)

func FuzzParseViews(f *testing.F) {
	for _, seed := range []string{
		"views:\n  - name: v\n    entity: id\n    ttl: 1h\n    features:\n      - {name: x, type: float64, default: 0}\n",
		"views:\n  - name: v\n    entity: id\n    features:\n      - {name: s, type: string, default: \"\"}\n      - {name: b, type: bool, default: true}\n      - {name: i, type: int64, default: -3}\n",
		"views: [{name: a, entity: e, ttl: 30d, features: [{name: f, type: int64, default: 1}]}]",
		"views:\n  - &a {name: v, entity: id, features: [{name: x, type: float64, default: 0}]}\n  - *a\n",
		"views: ~", "", "{", "views:\n  - name: v\n    entity: id\n    features:\n      - {name: x, type: float64, default: .inf}\n",
	} {
		f.Add([]byte(seed))
	}
	if b, err := os.ReadFile("testdata/views.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseViews(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidView) {
				t.Fatalf("error without ErrInvalidView: %v", err)
			}
			return
		}
		var again []View
		for _, v := range r.Views() {
			for _, ft := range v.Features {
				back, err := ParseValue(ft.Type, ft.Default.String())
				if err != nil || back != ft.Default {
					t.Fatalf("default of %s.%s does not round-trip", v.Name, ft.Name)
				}
			}
			again = append(again, *v)
		}
		if _, err := NewRegistry(again...); err != nil {
			t.Fatalf("parsed views do not validate: %v", err)
		}
	})
}

func fuzzView(t testing.TB) *View {
	r, err := ParseViews([]byte(`
views:
  - name: typed
    entity: customer
    features:
      - {name: score, type: float64, default: 0}
      - {name: count, type: int64, default: 0}
      - {name: segment, type: string, default: ""}
      - {name: active, type: bool, default: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := r.View("typed")
	return v
}

// FuzzLoadCSV feeds the feature file scanner (both passes of Load read
// through it): it must not panic, every error must be a LoadError with a
// line, and every row it accepts must hold valid keys and values.
func FuzzLoadCSV(f *testing.F) {
	for _, seed := range []string{
		"customer,score,count,segment,active,event_timestamp\nc1,0.25,42,gold,true,2025-06-01T11:50:00Z\n",
		"customer,score\n\"a,b\",1\n\"quote\"\"d\",2\n",
		"\ufeffcustomer,count\nc1,\n",
		"customer,score,y\nc1,1,0\n",
		"customer,score\nc1,1.5.5\n",
		"customer,score\nc1\n",
		"customer,score,event_timestamp\nc1,1,1748773800\nc2,2,2025-06-01 10:30:00\n",
		"customer,segment\n客户,\"two\nlines\"\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	v := fuzzView(f)
	loadedAt := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := newScanner(v, bytes.NewReader(data), LoadOptions{IgnoreColumns: nil}, loadedAt)
		for rows := 0; err == nil && rows < 10000; rows++ {
			var row Row
			row, err = sc.next()
			if err != nil {
				break
			}
			if ValidateEntity(row.Entity) != nil {
				t.Fatal("accepted an invalid entity key")
			}
			for _, sv := range row.Values {
				ft, _, ok := v.Feature(sv.Feature)
				if !ok {
					t.Fatalf("accepted unknown feature %q", sv.Feature)
				}
				val, perr := ParseValue(ft.Type, sv.Value)
				if perr != nil || val.String() != sv.Value {
					t.Fatalf("accepted value is not canonical %s", ft.Type)
				}
				if sv.EventTime.After(loadedAt.Add(MaxClockSkew)) {
					t.Fatal("accepted a future event time")
				}
			}
		}
		if err == nil || errors.Is(err, io.EOF) {
			return
		}
		var le *LoadError
		if !errors.As(err, &le) || le.Line < 1 || !errors.Is(err, ErrInvalidCSV) {
			t.Fatalf("error is not a LoadError with a line: %v", err)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Add(encodeEntry(3, []StoredValue{{"x0", "1.5", at}, {"s", "客户", at}}))
	f.Add(encodeEntry(0, nil))
	f.Add([]byte{1, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		gen, vals, err := decodeEntry(data)
		if err != nil {
			return
		}
		gen2, vals2, err := decodeEntry(encodeEntry(gen, vals))
		if err != nil || gen2 != gen || !reflect.DeepEqual(vals, vals2) && len(vals)+len(vals2) > 0 {
			t.Fatalf("decoded entry does not round-trip: %v", err)
		}
	})
}
