package console_test

import (
	"slices"
	"testing"

	"github.com/fedrisk/fedrisk/internal/console"
)

// The decoders read documents from other services (model cards and halves,
// receipts, Prometheus's answers) and a header from browsers: whatever they
// get, they return a value or an error, never panic, and keep their bounds.

func FuzzFlattenJSON(f *testing.F) {
	for _, s := range []string{`{"a":{"b":[1,2,{"c":null}]}}`, `[]`, `"x"`, `{"a":1,"a":2}`, `{"w":[1,2,3,4,5,6,7,8,9,"x"]}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		rows, _, err := console.FlattenJSON(doc, 50)
		if err == nil && len(rows) > 50 {
			t.Fatalf("%d rows for a limit of 50", len(rows))
		}
	})
}

func FuzzFeatureImportance(f *testing.F) {
	for _, s := range []string{`{"features":["a","b"],"weights":[1,-2]}`, `{"feature_importance":{"x":1}}`, `{"features":null}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		imp, err := console.FeatureImportance(doc)
		if err != nil {
			return
		}
		if !slices.IsSortedFunc(imp, func(a, b console.Importance) int {
			x, y := abs(a.Weight), abs(b.Weight)
			switch {
			case x > y:
				return -1
			case x < y:
				return 1
			}
			return 0
		}) {
			t.Fatalf("not sorted: %+v", imp)
		}
	})
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func FuzzParseAlerts(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"alerts":[{"labels":{"alertname":"A"},"state":"firing","activeAt":"2026-01-01T00:00:00Z"}]}}`))
	f.Add([]byte(`{"status":"success","data":{"alerts":[{"labels":null,"activeAt":"bad"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) { _, _ = console.ParseAlerts(body) })
}

func FuzzMetricSums(f *testing.F) {
	f.Add([]byte("# TYPE x_total counter\nx_total{outcome=\"a\"} 1\n"))
	f.Add([]byte("x_total{outcome=\"a\"} NaN\nx_total{outcome=\"a\"} +Inf\n"))
	f.Fuzz(func(t *testing.T, text []byte) { _, _ = console.MetricSums(text, "x_total", "outcome") })
}

func FuzzVerifyReceipt(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJjb25zZW50UmVjZWlwdElEIjoiY25zXzEifQ.c2ln", []byte(`{"keys":[]}`))
	f.Add("a.b.c", []byte(`{`))
	f.Fuzz(func(t *testing.T, jws string, jwks []byte) {
		r, err := console.VerifyReceipt(jws, jwks)
		if err == nil && r.Verified {
			t.Fatalf("a fuzzed receipt verified: %q", jws)
		}
	})
}

func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"zh-CN,zh;q=0.9", "en", "*;q=0", ";;;", "zh-Hant-TW;q=1.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if l := console.Negotiate(h); l != console.English && l != console.Chinese {
			t.Fatalf("Negotiate(%q) = %q", h, l)
		}
	})
}
