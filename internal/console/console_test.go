package console_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/console"
)

func TestNegotiate(t *testing.T) {
	for _, tt := range []struct {
		header string
		want   console.Lang
	}{
		{"", console.English},
		{"zh-CN,zh;q=0.9,en;q=0.8", console.Chinese},
		{"zh", console.Chinese},
		{"zh-Hans-CN", console.Chinese},
		{"en-US,en;q=0.9,zh-CN;q=0.5", console.English},
		{"fr-FR,fr;q=0.9", console.English},
		{"de;q=0.9,zh-CN;q=0.8", console.Chinese},
		{"*", console.English},
		{"garbage;;;q=x", console.English},
		{strings.Repeat("zh-CN,", 1000), console.Chinese},
	} {
		if got := console.Negotiate(tt.header); got != tt.want {
			t.Errorf("Negotiate(%.40q) = %s, want %s", tt.header, got, tt.want)
		}
	}
	if _, ok := console.ParseLang("zh-CN"); !ok {
		t.Error("zh-CN is not a language")
	}
	if _, ok := console.ParseLang("zh"); ok {
		t.Error("ParseLang accepts a tag that is not exactly one of the console's")
	}
}

// verbs lists the fmt verbs of a message, in order.
func verbs(s string) []string {
	return regexp.MustCompile(`%[-+# 0-9.\[\]]*[a-zA-Z%]`).FindAllString(s, -1)
}

func TestCatalogues(t *testing.T) {
	cats := console.NewCatalogs()
	en, zh := cats.For(console.English), cats.For(console.Chinese)
	if !slices.Equal(en.Keys(), zh.Keys()) {
		t.Fatal("the catalogues have different keys")
	}
	for _, k := range en.Keys() {
		if en.T(k) == "" || zh.T(k) == "" {
			t.Errorf("%s: empty message", k)
		}
		if !slices.Equal(verbs(en.T(k)), verbs(zh.T(k))) {
			t.Errorf("%s: format verbs differ: %q vs %q", k, en.T(k), zh.T(k))
		}
	}
	if cats.For("fr") != en {
		t.Error("an unknown language does not fall back to English")
	}
	if got := zh.S("status", "active"); got != "有效" {
		t.Errorf("S(status, active) = %q", got)
	}
	if got := zh.S("status", "brand-new"); got != "brand-new" {
		t.Errorf("an unknown value is not shown as it is: %q", got)
	}
}

// TestEveryUsedKeyExists reads the templates and the handlers for message
// keys and checks each is in the table.
func TestEveryUsedKeyExists(t *testing.T) {
	cat := console.NewCatalogs().For(console.English)
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`\.L\.[TF] "([a-z0-9_.]+)"`),
		regexp.MustCompile(`\bcat\.[TF]\("([a-z0-9_.]+)"`),
		regexp.MustCompile(`\bc\.[TF]\("([a-z0-9_.]+)"`),
		regexp.MustCompile(`"(nav\.[a-z]+)"`),
	}
	files, _ := filepath.Glob("consoleapi/templates/*.html")
	gofiles, _ := filepath.Glob("consoleapi/*.go")
	more, _ := filepath.Glob("*.go")
	files = append(append(files, gofiles...), more...)
	used := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || strings.HasSuffix(f, "messages.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range patterns {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				used++
				if !cat.Has(m[1]) {
					t.Errorf("%s uses %q, which is not in the message table", f, m[1])
				}
			}
		}
	}
	if used < 200 {
		t.Errorf("found only %d uses of message keys: is the scan broken?", used)
	}
}

func TestLineChart(t *testing.T) {
	c := console.NewLineChart("loss", "epoch", "loss", []console.Series{
		{Name: "a", Class: "s1", Points: []console.Point{{1, 0.7}, {2, 0.6}, {3, 0.55}, {4, math.NaN()}}},
		{Name: "b", Class: "s2", Points: []console.Point{{1, 0.5}, {4, 0.52}}},
	})
	if c.Empty || len(c.Series) != 2 || len(c.Series[0].Dots) != 3 || len(c.Series[1].Dots) != 2 {
		t.Fatalf("series %+v", c.Series)
	}
	for _, s := range c.Series {
		for _, d := range s.Dots {
			if d.X < c.Left || d.X > c.Right || d.Y < c.Top || d.Y > c.Bottom {
				t.Errorf("dot %+v outside the plot %v..%v × %v..%v", d, c.Left, c.Right, c.Top, c.Bottom)
			}
		}
	}
	// Higher values are drawn higher (smaller y).
	if d := c.Series[0].Dots; !(d[0].Y < d[1].Y) {
		t.Errorf("y axis upside down: %+v", d)
	}
	// Epochs get whole-number ticks.
	for _, tk := range c.XTicks {
		if strings.Contains(tk.Label, ".") {
			t.Errorf("x tick %q", tk.Label)
		}
	}
	if len(c.YTicks) < 3 {
		t.Errorf("y ticks %+v", c.YTicks)
	}
	if got := strings.Count(c.Series[0].Points, ","); got != 3 {
		t.Errorf("polyline %q", c.Series[0].Points)
	}
	if e := console.NewLineChart("x", "x", "y", nil); !e.Empty {
		t.Error("a chart without points is not empty")
	}
	one := console.NewLineChart("x", "x", "y", []console.Series{{Points: []console.Point{{0, 1}}}})
	if one.Empty || len(one.Series[0].Dots) != 1 {
		t.Errorf("one point: %+v", one)
	}
}

func TestBarChartAndHistogram(t *testing.T) {
	b := console.NewBarChart("w", []console.BarItem{{Label: "a", Value: 2}, {Label: "b", Value: -1}, {Label: "c", Value: 0.5}})
	if !b.Signed || len(b.Bars) != 3 {
		t.Fatalf("%+v", b)
	}
	if b.Bars[0].X != b.Zero || b.Bars[1].X >= b.Zero || b.Bars[0].W <= b.Bars[2].W || b.Bars[0].W != 2*b.Bars[1].W {
		t.Errorf("bars %+v (zero %v)", b.Bars, b.Zero)
	}
	u := console.NewBarChart("u", []console.BarItem{{Label: "a", Value: 3}, {Label: "b", Value: 1}})
	if u.Signed || u.Zero >= u.Bars[0].X+u.Bars[0].W {
		t.Errorf("unsigned %+v", u)
	}
	h := console.NewHistogram("h", "x", "y", []string{"a", "b", "c"}, []int{0, 5, 2}, []string{"bar-low"})
	if len(h.Bars) != 3 || h.Bars[0].H != 0 || h.Bars[1].H <= h.Bars[2].H || h.Bars[0].Class != "bar-low" || h.Bars[1].Class != "bar" {
		t.Errorf("histogram %+v", h.Bars)
	}
	g := console.NewGauge(300, 850, 1000)
	if g.Pos != 100 {
		t.Errorf("gauge clamps: %+v", g)
	}
}

func TestSummarizeBudgets(t *testing.T) {
	cat := console.NewCatalogs().For(console.English)
	var bs []console.Budget
	for i, f := range []float64{0, 0.05, 0.19, 0.2, 0.5, 1, 1, math.NaN()} {
		bs = append(bs, console.Budget{SubjectRef: fmt.Sprint(i), Fraction: f, Remaining: f * 10, Total: 10, Spent: 10 - f*10})
	}
	s := console.SummarizeBudgets(cat, bs)
	if s.Count != 8 || s.LowCount != 3 || s.Exhausted != 1 || s.MinFraction != 0 {
		t.Errorf("summary %+v", s)
	}
	if s.Low[0].Fraction != 0 || s.Low[2].Fraction != 0.19 {
		t.Errorf("low list not lowest first: %+v", s.Low)
	}
	counts := map[string]int{}
	for _, b := range s.Buckets {
		counts[b.Label] = b.Count
		if b.Low != (b.Label == "0.0–0.1" || b.Label == "0.1–0.2") {
			t.Errorf("bucket %s marked low: %v", b.Label, b.Low)
		}
	}
	if counts["0.0–0.1"] != 2 || counts["0.1–0.2"] != 1 || counts["0.2–0.3"] != 1 || counts["0.9–1.0"] != 2 {
		t.Errorf("buckets %v", counts)
	}
}

func TestTrainingCurvesUnits(t *testing.T) {
	cat := console.NewCatalogs().For(console.English)
	stats := []console.EpochStat{{Epoch: 0, Loss: 0.7, AUC: 0.6, KS: 0.2}, {Epoch: 1, Loss: 0.6, AUC: 0.7, KS: 0.3}}
	if c := console.TrainingCurves(cat, "hetero-lr", stats); c.Unit != "epoch" || len(c.Quality.Series) != 2 {
		t.Errorf("%+v", c)
	}
	if c := console.TrainingCurves(cat, "hetero-secureboost", stats); c.Unit != "tree" {
		t.Errorf("a boosting job is not per tree: %s", c.Unit)
	}
}

func TestFlattenJSON(t *testing.T) {
	doc := `{"b": 1, "a": {"z": true, "y": [1, 2]}, "w": [1,2,3,4,5,6,7,8,9,10], "n": null, "e": {}, "s": "text"}`
	rows, trunc, err := console.FlattenJSON([]byte(doc), 100)
	if err != nil || trunc {
		t.Fatal(err, trunc)
	}
	want := []console.KV{{"b", "1"}, {"a.z", "true"}, {"a.y[0]", "1"}, {"a.y[1]", "2"}, {"w", "10 values: 1, 2, 3, 4, …"}, {"n", "null"}, {"e", "{}"}, {"s", "text"}}
	if !slices.Equal(rows, want) {
		t.Errorf("rows\n%v\nwant\n%v", rows, want)
	}
	if rows, trunc, _ := console.FlattenJSON([]byte(doc), 3); len(rows) != 3 || !trunc {
		t.Errorf("limit: %d %v", len(rows), trunc)
	}
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `[1,`} {
		if _, _, err := console.FlattenJSON([]byte(bad), 10); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFeatureImportance(t *testing.T) {
	imp, err := console.FeatureImportance([]byte(`{"format":"x","features":["a","b","c"],"weights":[0.1,-0.5,0.3]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{imp[0].Feature, imp[1].Feature, imp[2].Feature}; !slices.Equal(got, []string{"b", "c", "a"}) || imp[0].Weight != -0.5 {
		t.Errorf("%+v", imp)
	}
	tree, err := console.FeatureImportance([]byte(`{"feature_importance":{"x1":3,"x2":7}}`))
	if err != nil || tree[0].Feature != "x2" {
		t.Errorf("%+v %v", tree, err)
	}
	if _, err := console.FeatureImportance([]byte(`{"features":["a"],"weights":[]}`)); !errors.Is(err, console.ErrNoImportance) {
		t.Errorf("mismatched lengths: %v", err)
	}
}

func TestParseAlerts(t *testing.T) {
	body := `{"status":"success","data":{"alerts":[
	 {"labels":{"alertname":"HighLatency","severity":"warning","service":"serving"},"annotations":{"summary":"p95 above 0.5 s"},"state":"firing","activeAt":"2026-01-02T03:04:05Z","value":"1"},
	 {"labels":{"alertname":"PrivacyBudgetLow","severity":"critical"},"annotations":{"description":"budget"},"state":"firing","activeAt":"2026-01-02T03:04:05Z"},
	 {"labels":{"alertname":"ServiceDown","severity":"critical"},"state":"pending","activeAt":"2026-01-02T03:04:05Z"}]}}`
	as, err := console.ParseAlerts([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 3 || as[0].Name != "PrivacyBudgetLow" || as[1].Name != "HighLatency" || as[2].State != "pending" {
		t.Errorf("order %+v", as)
	}
	if as[1].Labels != "service=serving" || as[0].Summary != "budget" || as[1].Since.IsZero() {
		t.Errorf("%+v", as[1])
	}
	if _, err := console.ParseAlerts([]byte(`{"status":"error","error":"bad"}`)); err == nil {
		t.Error("an error answer was accepted")
	}
}

func TestMetricSums(t *testing.T) {
	text := "# TYPE scoring_partials_total counter\n" +
		"scoring_partials_total{outcome=\"released\"} 20\n" +
		"scoring_partials_total{outcome=\"cached\"} 3\n" +
		"# TYPE other gauge\nother 1\n"
	sums, err := console.MetricSums([]byte(text), "scoring_partials_total", "outcome")
	if err != nil || sums["released"] != 20 || sums["cached"] != 3 || len(sums) != 2 {
		t.Errorf("%v %v", sums, err)
	}
	if s, err := console.MetricSums([]byte(text), "missing_total", "x"); err != nil || len(s) != 0 {
		t.Errorf("%v %v", s, err)
	}
	if _, err := console.MetricSums([]byte("not metrics {{{"), "x", ""); err == nil {
		t.Error("garbage parsed")
	}
}

func TestVerifyReceipt(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, consent.Receipt{Version: "KI-CR-v1.1.0", ConsentReceiptID: "cns_1",
		ExpiresAt: time.Unix(2e9, 0).UTC(), RegisteredClaims: jwt.RegisteredClaims{Issuer: "fedrisk:bank"}})
	tok.Header["kid"], tok.Header["typ"] = "k1", consent.ReceiptType
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	r, err := console.VerifyReceipt(signed, jwks)
	if err != nil || !r.Verified || r.KID != "k1" || r.ConsentReceiptID != "cns_1" || r.Issuer != "fedrisk:bank" {
		t.Fatalf("%+v %v", r, err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	wrong, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &other.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	r, err = console.VerifyReceipt(signed, wrong)
	if err != nil || r.Verified || r.Problem == "" || r.ConsentReceiptID != "cns_1" {
		t.Errorf("a receipt with a wrong key: %+v %v", r, err)
	}
	if _, err := console.VerifyReceipt("not.a.jws!", jwks); err == nil {
		t.Error("garbage accepted")
	}
}

func TestInt(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 30000: "30,000"} {
		if got := console.Int(n); got != want {
			t.Errorf("Int(%d) = %q", n, got)
		}
	}
}
