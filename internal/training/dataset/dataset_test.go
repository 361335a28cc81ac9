package dataset

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		labelled bool
		rows     int
		features []string
		err      bool
	}{
		{name: "guest", in: "id,y,x0,x1\na,1,0.5,-2\nb,0,1e3,3\n", labelled: true, rows: 2, features: []string{"x0", "x1"}},
		{name: "host", in: "id,f\na,1\n", rows: 1, features: []string{"f"}},
		{name: "spaces and CRLF", in: "id , y , x0\r\n a , 0 , 1 \r\n", labelled: true, rows: 1, features: []string{"x0"}},
		{name: "empty", in: "", err: true},
		{name: "header only", in: "id,x0\n", err: true},
		{name: "no features", in: "id\na\n", err: true},
		{name: "guest without y", in: "id,x0\na,1\n", labelled: true, err: true},
		{name: "first column not id", in: "key,x0\na,1\n", err: true},
		{name: "short row", in: "id,x0,x1\na,1\n", err: true},
		{name: "long row", in: "id,x0\na,1,2\n", err: true},
		{name: "not a number", in: "id,x0\na,one\n", err: true},
		{name: "NaN", in: "id,x0\na,NaN\n", err: true},
		{name: "infinite", in: "id,x0\na,1e999\n", err: true},
		{name: "label 2", in: "id,y,x0\na,2,1\n", labelled: true, err: true},
		{name: "repeated id", in: "id,x0\na,1\na,2\n", err: true},
		{name: "empty id", in: "id,x0\n,1\n", err: true},
		{name: "repeated feature", in: "id,x,x\na,1,2\n", err: true},
		{name: "bad quoting", in: "id,x0\n\"a,1\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := ReadCSV(strings.NewReader(tt.in), tt.labelled)
			if tt.err {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tab.Len() != tt.rows || tab.X.Rows != tt.rows || strings.Join(tab.Features, ",") != strings.Join(tt.features, ",") {
				t.Fatalf("got %d rows, features %v", tab.Len(), tab.Features)
			}
			if tab.HasLabels() != tt.labelled {
				t.Fatalf("labels %v", tab.Labels)
			}
		})
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	g, hs, _, err := Synthetic(SyntheticConfig{Rows: 50, GuestFeatures: 3, HostFeatures: []int{2}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tab := range []*Table{g, hs[0]} {
		var buf bytes.Buffer
		if err := WriteCSV(&buf, tab); err != nil {
			t.Fatal(err)
		}
		back, err := ReadCSV(&buf, tab.HasLabels())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range tab.X.Data {
			if back.X.Data[i] != v {
				t.Fatalf("value %d: %v != %v", i, back.X.Data[i], v)
			}
		}
	}
}

func TestAlign(t *testing.T) {
	tab, err := ReadCSV(strings.NewReader("id,y,x\na,1,1\nb,0,2\nc,1,3\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tab.Align([]string{"c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got.IDs[0] != "c" || got.X.At(0, 0) != 3 || got.Labels[1] != 1 || got.X.At(1, 0) != 1 {
		t.Fatalf("aligned %v %v %v", got.IDs, got.X.Data, got.Labels)
	}
	if _, err := tab.Align([]string{"a", "z"}); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing id: %v", err)
	}
	if _, err := tab.Align([]string{"a", "a"}); !errors.Is(err, ErrFormat) {
		t.Fatalf("repeated id: %v", err)
	}
	other, _ := ReadCSV(strings.NewReader("id,x\nc,1\nq,2\na,3\n"), false)
	if ids := CommonIDs(tab, other); strings.Join(ids, ",") != "a,c" {
		t.Fatalf("common ids %v", ids)
	}
}

func TestSplit(t *testing.T) {
	s := DefaultSplit()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 20000)
	for i := range ids {
		ids[i] = string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune('0'+i%10)) + "-" + itoa(i)
	}
	tr, va, te := s.Indices(ids)
	if len(tr)+len(va)+len(te) != len(ids) {
		t.Fatal("parts do not cover the rows")
	}
	frac := func(p []int) float64 { return float64(len(p)) / float64(len(ids)) }
	if math.Abs(frac(te)-0.2) > 0.015 || math.Abs(frac(va)-0.1) > 0.015 {
		t.Fatalf("fractions test %.3f validation %.3f", frac(te), frac(va))
	}
	// Deterministic, independent of order and of the other rows.
	for i := 0; i < 100; i++ {
		if a, b := s.Assign(ids[i]), s.Assign(ids[i]); a != b {
			t.Fatal("not deterministic")
		}
	}
	other := Split{Seed: "another", TestFraction: 0.2, ValidationFraction: 0.1}
	same := 0
	for _, id := range ids[:1000] {
		if other.Assign(id) == s.Assign(id) {
			same++
		}
	}
	if same > 800 {
		t.Fatalf("the seed does not change the split (%d/1000 equal)", same)
	}
	for _, bad := range []Split{{TestFraction: -0.1}, {TestFraction: 0.6, ValidationFraction: 0.4}, {TestFraction: math.NaN()}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func itoa(i int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func TestStandardisation(t *testing.T) {
	m := Matrix{Rows: 4, Cols: 2, Data: []float64{1, 5, 2, 5, 3, 5, 4, 5}}
	st := FitStandardisation(m)
	if st.Means[0] != 2.5 || math.Abs(st.Stds[0]-math.Sqrt(1.25)) > 1e-12 || st.Stds[1] != 1 {
		t.Fatalf("%+v", st)
	}
	out := st.Apply(m)
	var sum float64
	for i := 0; i < 4; i++ {
		sum += out.At(i, 0)
		if out.At(i, 1) != 0 {
			t.Fatal("constant column not mapped to 0")
		}
	}
	if math.Abs(sum) > 1e-12 || m.Data[0] != 1 {
		t.Fatal("not centred, or input modified")
	}
	if err := st.Validate(2); err != nil {
		t.Fatal(err)
	}
	if (Standardisation{Means: []float64{0}, Stds: []float64{0}}).Validate(1) == nil {
		t.Fatal("zero std accepted")
	}
}

func TestSynthetic(t *testing.T) {
	cfg := SyntheticConfig{Rows: 4000, GuestFeatures: 4, HostFeatures: []int{3, 2}, Seed: 9}
	g, hs, truth, err := Synthetic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g2, _, _, _ := Synthetic(cfg)
	if g.X.Data[17] != g2.X.Data[17] || g.Labels[99] != g2.Labels[99] {
		t.Fatal("not deterministic")
	}
	if len(hs) != 2 || hs[1].X.Cols != 2 || len(truth.HostWeights[0]) != 3 {
		t.Fatal("shapes")
	}
	var pos float64
	for _, y := range g.Labels {
		pos += y
	}
	if r := pos / 4000; r < 0.12 || r > 0.35 {
		t.Fatalf("positive rate %.3f", r)
	}
	if _, _, _, err := Synthetic(SyntheticConfig{Rows: 10, GuestFeatures: 1}); err == nil {
		t.Fatal("no hosts accepted")
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("id,y,x0,x1\na,1,0.5,-2\nb,0,1e3,3\n", true)
	f.Add("id,x0\na,1\n", false)
	f.Add("id,x0\n\"a\"\"b\",1\n", false)
	f.Fuzz(func(t *testing.T, in string, labelled bool) {
		tab, err := ReadCSV(strings.NewReader(in), labelled)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error not ErrFormat: %v", err)
			}
			return
		}
		if tab.Len() == 0 || tab.X.Rows != tab.Len() || len(tab.X.Data) != tab.Len()*tab.X.Cols || tab.HasLabels() != labelled {
			t.Fatalf("inconsistent table")
		}
		for _, v := range tab.X.Data {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatal("non-finite value accepted")
			}
		}
	})
}
