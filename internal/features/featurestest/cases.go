package featurestest

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/features"
)

func ts(d time.Duration) string { return T0.Add(d).Format(time.RFC3339Nano) }

func load(t testing.TB, s *features.Store, view, file string, opts features.LoadOptions) features.LoadReport {
	t.Helper()
	rep, err := s.Load(context.Background(), view, strings.NewReader(file), opts)
	if err != nil {
		t.Fatalf("load %s: %v", view, err)
	}
	return rep
}

func get(t testing.TB, s *features.Store, view, entity string, feats ...string) features.Vector {
	t.Helper()
	v, err := s.Get(context.Background(), view, entity, feats)
	if err != nil {
		t.Fatalf("get %s: %v", view, err)
	}
	return v
}

func anys(v features.Vector) []any {
	out := make([]any, len(v.Values))
	for i, x := range v.Values {
		out[i] = x.Any()
	}
	return out
}

func wantVector(t testing.TB, got features.Vector, values []any, status features.Status, at time.Time) {
	t.Helper()
	if !slices.Equal(anys(got), values) {
		t.Errorf("values %v, want %v", anys(got), values)
	}
	for i := range got.Values {
		if got.Statuses[i] != status || got.Present[i] != (status == features.StatusPresent) {
			t.Errorf("%s: status %v present %v, want %v", got.Features[i], got.Statuses[i], got.Present[i], status)
		}
		if !got.EventTimes[i].Equal(at) {
			t.Errorf("%s: event time %v, want %v", got.Features[i], got.EventTimes[i], at)
		}
	}
}

const typedHeader = "customer,score,count,segment,active,event_timestamp\n"

func testLoadAndGet(t *testing.T, e *env) {
	rep := load(t, e.store, "typed", typedHeader+
		"c1,0.25,42,gold,true,"+ts(-10*time.Minute)+"\n"+
		"c2,-3.5e-7,-9,\"silver, plus\",false,"+ts(-20*time.Minute)+"\n", features.LoadOptions{})
	if rep.Rows != 2 || rep.Values != 8 || rep.Stale != 0 || rep.Empty != 0 || rep.Batches != 1 || rep.Generation < 1 {
		t.Errorf("report %+v", rep)
	}
	if rep.TimestampColumn != "event_timestamp" || !slices.Equal(rep.Columns, []string{"score", "count", "segment", "active"}) {
		t.Errorf("columns %v, timestamp column %q", rep.Columns, rep.TimestampColumn)
	}
	v := get(t, e.store, "typed", "c1")
	if !slices.Equal(v.Features, []string{"score", "count", "segment", "active"}) {
		t.Errorf("features %v", v.Features)
	}
	wantVector(t, v, []any{0.25, int64(42), "gold", true}, features.StatusPresent, T0.Add(-10*time.Minute))
	v = get(t, e.store, "typed", "c2", "segment", "score")
	wantVector(t, v, []any{"silver, plus", -3.5e-7}, features.StatusPresent, T0.Add(-20*time.Minute))
	// Read again: now from the cache, same answer.
	v = get(t, e.store, "typed", "c2", "segment", "score")
	wantVector(t, v, []any{"silver, plus", -3.5e-7}, features.StatusPresent, T0.Add(-20*time.Minute))
}

func testTypedValues(t *testing.T, e *env) {
	at := ts(-time.Minute)
	file := typedHeader +
		"max,1e308," + strconv.FormatInt(math.MaxInt64, 10) + ",\"quote \"\" and, comma\",TRUE," + at + "\n" +
		"min,5e-324," + strconv.FormatInt(math.MinInt64, 10) + ",\"two\nlines\",0," + at + "\n" +
		"tenth, 0.1 , 12 ,Zoë 客户 🙂,t," + at + "\n" +
		"negzero,-0,0,,F," + at + "\n"
	load(t, e.store, "typed", file, features.LoadOptions{})
	cases := []struct {
		entity string
		want   []any
	}{
		{"max", []any{1e308, int64(math.MaxInt64), `quote " and, comma`, true}},
		{"min", []any{5e-324, int64(math.MinInt64), "two\nlines", false}},
		{"tenth", []any{0.1, int64(12), "Zoë 客户 🙂", true}},
	}
	for _, tc := range cases {
		t.Run(tc.entity, func(t *testing.T) {
			for range 2 { // database, then cache
				wantVector(t, get(t, e.store, "typed", tc.entity), tc.want, features.StatusPresent, T0.Add(-time.Minute))
			}
		})
	}
	v := get(t, e.store, "typed", "negzero", "score")
	if f := v.Values[0].Float64(); f != 0 || !math.Signbit(f) {
		t.Errorf("-0 read back as %v", f)
	}
	if v.Values[0].Type() != features.Float64 {
		t.Errorf("type %v", v.Values[0].Type())
	}
	// Float64s: numbers and bools for a model; strings refused.
	v = get(t, e.store, "typed", "tenth", "score", "count", "active")
	if fs, err := v.Float64s(); err != nil || !slices.Equal(fs, []float64{0.1, 12, 1}) {
		t.Errorf("Float64s = %v, %v", fs, err)
	}
	if _, err := get(t, e.store, "typed", "tenth").Float64s(); err == nil {
		t.Error("Float64s accepted a string feature")
	}
}

func testDefaults(t *testing.T, e *env) {
	defaults := []any{-1.5, int64(7), "unknown", false}
	wantVector(t, get(t, e.store, "typed", "nobody"), defaults, features.StatusNotFound, time.Time{})
	// A view never loaded.
	v := get(t, e.store, "guest_credit", "1", "x0", "x12")
	wantVector(t, v, []any{0.0, 0.0}, features.StatusNotFound, time.Time{})

	rep := load(t, e.store, "typed", typedHeader+"c3,,5,,true,"+ts(-time.Minute)+"\n", features.LoadOptions{})
	if rep.Empty != 2 || rep.Values != 2 {
		t.Errorf("report %+v", rep)
	}
	load(t, e.store, "typed", "customer,score\nc4,1.5\n", features.LoadOptions{})
	for range 2 { // database, then cache
		v = get(t, e.store, "typed", "c3")
		want := []features.Status{features.StatusNotFound, features.StatusPresent, features.StatusNotFound, features.StatusPresent}
		if !slices.Equal(v.Statuses, want) || !slices.Equal(anys(v), []any{-1.5, int64(5), "unknown", true}) {
			t.Errorf("c3: %v %v", v.Statuses, anys(v))
		}
		if !v.EventTimes[0].IsZero() || !v.EventTimes[1].Equal(T0.Add(-time.Minute)) {
			t.Errorf("c3 event times %v", v.EventTimes)
		}
		v = get(t, e.store, "typed", "c4")
		want = []features.Status{features.StatusPresent, features.StatusNotFound, features.StatusNotFound, features.StatusNotFound}
		if !slices.Equal(v.Statuses, want) || !slices.Equal(anys(v), []any{1.5, int64(7), "unknown", false}) {
			t.Errorf("c4: %v %v", v.Statuses, anys(v))
		}
		if !v.EventTimes[0].Equal(T0) {
			t.Errorf("without a timestamp column the load time is the event time: %v", v.EventTimes[0])
		}
	}
}

func testMaxAge(t *testing.T, e *env) {
	load(t, e.store, "typed", typedHeader+
		"old,1,2,a,true,"+ts(-2*time.Hour)+"\n"+
		"fresh,3,4,b,true,"+ts(-30*time.Minute)+"\n", features.LoadOptions{})
	old := get(t, e.store, "typed", "old")
	wantVector(t, old, []any{-1.5, int64(7), "unknown", false}, features.StatusOutsideMaxAge, T0.Add(-2*time.Hour))
	for range 2 {
		wantVector(t, get(t, e.store, "typed", "fresh"), []any{3.0, int64(4), "b", true}, features.StatusPresent, T0.Add(-30*time.Minute))
	}
	e.clock.Advance(31 * time.Minute) // fresh is now 61 minutes old; the view's ttl is 1h
	wantVector(t, get(t, e.store, "typed", "fresh"), []any{-1.5, int64(7), "unknown", false}, features.StatusOutsideMaxAge, T0.Add(-30*time.Minute))
	// host_credit has ttl 30d: a value loaded now is fresh.
	load(t, e.store, "host_credit", "id,x0\n7,0.5\n", features.LoadOptions{})
	wantVector(t, get(t, e.store, "host_credit", "7", "x0"), []any{0.5}, features.StatusPresent, e.clock.Now())
}

func cached(t testing.TB, e *env, view, entity string) bool {
	t.Helper()
	_, ok, err := e.cache.Get(context.Background(), cache.UserFeatures(), features.CacheKey(view, entity))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func testReload(t *testing.T, e *env) {
	load(t, e.store, "host_credit", "id,x0,x1\n1,0.1,1.1\n2,0.2,1.2\n3,0.3,1.3\n", features.LoadOptions{})
	wantVector(t, get(t, e.store, "host_credit", "1", "x0", "x1"), []any{0.1, 1.1}, features.StatusPresent, T0)
	get(t, e.store, "host_credit", "2")
	get(t, e.store, "host_credit", "4") // unknown: cached as "no values"
	for _, id := range []string{"1", "2", "4"} {
		if !cached(t, e, "host_credit", id) {
			t.Fatalf("entity %s not cached after a read", id)
		}
	}
	e.clock.Advance(time.Minute)
	rep := load(t, e.store, "host_credit", "id,x0\n1,9.5\n4,4.5\n", features.LoadOptions{})
	if rep.Invalidated != 2 || rep.InvalidationErrors != 0 || rep.Values != 2 {
		t.Errorf("report %+v", rep)
	}
	if cached(t, e, "host_credit", "1") || cached(t, e, "host_credit", "4") {
		t.Error("the load did not delete the cache entries of the entities it wrote")
	}
	if !cached(t, e, "host_credit", "2") {
		t.Error("the load deleted the cache entry of an entity it did not write")
	}
	v := get(t, e.store, "host_credit", "1", "x0", "x1")
	if !slices.Equal(anys(v), []any{9.5, 1.1}) || !v.EventTimes[0].Equal(T0.Add(time.Minute)) || !v.EventTimes[1].Equal(T0) {
		t.Errorf("after reload: %v at %v", anys(v), v.EventTimes)
	}
	wantVector(t, get(t, e.store, "host_credit", "4", "x0"), []any{4.5}, features.StatusPresent, T0.Add(time.Minute))
	wantVector(t, get(t, e.store, "host_credit", "2", "x0"), []any{0.2}, features.StatusPresent, T0)
}

func testOlderLoad(t *testing.T, e *env) {
	h := "customer,score,event_timestamp\n"
	load(t, e.store, "typed", h+"c1,1,"+ts(-10*time.Minute)+"\n", features.LoadOptions{})
	get(t, e.store, "typed", "c1")
	rep := load(t, e.store, "typed", h+"c1,2,"+ts(-20*time.Minute)+"\n", features.LoadOptions{})
	if rep.Stale != 1 || rep.Values != 0 {
		t.Errorf("older load: %+v", rep)
	}
	wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{1.0}, features.StatusPresent, T0.Add(-10*time.Minute))
	rep = load(t, e.store, "typed", h+"c1,3,"+ts(-10*time.Minute)+"\n", features.LoadOptions{})
	if rep.Stale != 0 || rep.Values != 1 {
		t.Errorf("same-time load: %+v", rep)
	}
	wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{3.0}, features.StatusPresent, T0.Add(-10*time.Minute))
}

func testDuplicateRows(t *testing.T, e *env) {
	for _, batch := range []int{1, 1000} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			id := fmt.Sprintf("dup%d", batch)
			file := "customer,score,count,event_timestamp\n" +
				id + ",1,1," + ts(-5*time.Minute) + "\n" +
				id + ",2,," + ts(-10*time.Minute) + "\n" +
				id + ",3,," + ts(-5*time.Minute) + "\n" +
				"other,4,4," + ts(-5*time.Minute) + "\n"
			rep := load(t, e.store, "typed", file, features.LoadOptions{BatchSize: batch})
			if rep.Rows != 4 {
				t.Errorf("report %+v", rep)
			}
			wantVector(t, get(t, e.store, "typed", id, "score", "count"), []any{3.0, int64(1)}, features.StatusPresent, T0.Add(-5*time.Minute))
		})
	}
}

func testOtherProcess(t *testing.T, e *env) {
	// The loader runs elsewhere (the CLI) and cannot reach this store's
	// cache: no cache at all here.
	loader := e.newStore(t, e.views, nil)
	load(t, loader, "typed", "customer,score\nc1,1\n", features.LoadOptions{})
	for range 2 {
		wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{1.0}, features.StatusPresent, T0)
	}
	if !cached(t, e, "typed", "c1") {
		t.Fatal("not cached")
	}
	e.clock.Advance(time.Second)
	load(t, loader, "typed", "customer,score\nc1,2\n", features.LoadOptions{})
	// Within GenerationCheck (1 s) the cached value may still be served;
	// after it, never.
	e.clock.Advance(time.Second)
	wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{2.0}, features.StatusPresent, T0.Add(time.Second))
}

var unicodeKeys = []string{"客户-0001", "Zoë Ångström", "ключ", "🙂-user", "a,b", `quote"d`, "e\u0301", "naïve\u00a0space", "ﬁ"}

func testUnicode(t *testing.T, e *env) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"id", "x0"})
	for i, k := range unicodeKeys {
		w.Write([]string{k, strconv.Itoa(i)})
	}
	w.Flush()
	rep := load(t, e.store, "host_credit", buf.String(), features.LoadOptions{})
	if rep.Rows != len(unicodeKeys) {
		t.Fatalf("report %+v", rep)
	}
	for range 2 {
		vs, err := e.store.GetBatch(context.Background(), "host_credit", unicodeKeys, []string{"x0"})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vs {
			if v.Statuses[0] != features.StatusPresent || v.Values[0].Float64() != float64(i) {
				t.Errorf("key %d (%q): %v %v", i, unicodeKeys[i], v.Statuses, anys(v))
			}
		}
	}
	// Keys are stored as given: the composed é is another key than e + U+0301.
	if v := get(t, e.store, "host_credit", "é", "x0"); v.Statuses[0] != features.StatusNotFound {
		t.Errorf("composed é found: keys were normalised")
	}
}

func testInvalidRequests(t *testing.T, e *env) {
	ctx := context.Background()
	if _, err := e.store.Get(ctx, "nope", "1", nil); !errors.Is(err, features.ErrUnknownView) {
		t.Errorf("unknown view: %v", err)
	}
	if _, err := e.store.Get(ctx, "typed", "1", []string{"score", "nope"}); !errors.Is(err, features.ErrUnknownFeature) {
		t.Errorf("unknown feature: %v", err)
	}
	if _, err := e.store.Load(ctx, "nope", strings.NewReader("id,x0\n"), features.LoadOptions{}); !errors.Is(err, features.ErrUnknownView) {
		t.Errorf("load into unknown view: %v", err)
	}
	for name, key := range map[string]string{
		"empty": "", "leading space": " 42", "trailing space": "42 ", "too long": strings.Repeat("k", 257),
		"NUL": "4\x002", "newline": "4\n2", "bad UTF-8": "4\xff2", "C1 control": "4\u00852",
	} {
		_, err := e.store.GetBatch(ctx, "typed", []string{"ok", key}, nil)
		if !errors.Is(err, features.ErrInvalidEntity) {
			t.Errorf("%s: %v", name, err)
		}
		if key != "" && strings.Contains(fmt.Sprint(err), key) {
			t.Errorf("%s: the error quotes the entity key", name)
		}
	}
	if _, err := e.store.Get(ctx, "typed", strings.Repeat("k", 256), nil); err != nil {
		t.Errorf("256-byte key: %v", err)
	}
}

func testBadFiles(t *testing.T, e *env) {
	var long strings.Builder
	long.WriteString(typedHeader)
	for i := range 2499 {
		fmt.Fprintf(&long, "c%d,%d,1,a,true,%s\n", i, i, ts(-time.Minute))
	}
	long.WriteString("bad,1.5.5,1,a,true," + ts(-time.Minute) + "\n")
	ok := "c1,1,2,a,true," + ts(-time.Minute) + "\n"
	cases := []struct {
		name   string
		file   string
		opts   features.LoadOptions
		line   int
		column string
		msg    string
	}{
		{"bad float after 2499 good rows", long.String(), features.LoadOptions{BatchSize: 100}, 2501, "score", "float64"},
		{"empty entity", typedHeader + ok + ",1,2,a,true," + ts(0) + "\n", features.LoadOptions{}, 3, "customer", "empty"},
		{"entity with a space", typedHeader + ok + " c2,1,2,a,true," + ts(0) + "\n", features.LoadOptions{}, 3, "customer", "white space"},
		{"int with a fraction", typedHeader + ok + "c2,1,2.5,a,true," + ts(0) + "\n", features.LoadOptions{}, 3, "count", "int64"},
		{"bad bool", typedHeader + ok + "c2,1,2,a,yes," + ts(0) + "\n", features.LoadOptions{}, 3, "active", "bool"},
		{"NaN", typedHeader + ok + "c2,NaN,2,a,true," + ts(0) + "\n", features.LoadOptions{}, 3, "score", "finite"},
		{"bad event time", typedHeader + ok + "c2,1,2,a,true,yesterday\n", features.LoadOptions{}, 3, "event_timestamp", "event time"},
		{"future event time", typedHeader + ok + "c2,1,2,a,true," + ts(time.Hour) + "\n", features.LoadOptions{}, 3, "event_timestamp", "future"},
		{"too few fields", typedHeader + ok + "c2,1,2\n", features.LoadOptions{}, 3, "", "number of fields"},
		{"bare quote", typedHeader + ok + "c2,1,2,a\"b,true," + ts(0) + "\n", features.LoadOptions{}, 3, "", "quote"},
		{"unknown column", "customer,score,nope\nc1,1,2\n", features.LoadOptions{}, 1, "", `"nope"`},
		{"no entity column", "score,count\n1,2\n", features.LoadOptions{}, 1, "", "entity column \"customer\""},
		{"duplicate column", "customer,score,score\nc1,1,2\n", features.LoadOptions{}, 1, "", "twice"},
		{"no feature column", "customer,event_timestamp\nc1," + ts(0) + "\n", features.LoadOptions{}, 1, "", "no feature"},
		{"ignored column absent", "customer,score\nc1,1\n", features.LoadOptions{IgnoreColumns: []string{"y"}}, 1, "", `"y"`},
		{"empty file", "", features.LoadOptions{}, 1, "", "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.store.Load(context.Background(), "typed", strings.NewReader(tc.file), tc.opts)
			var le *features.LoadError
			if !errors.As(err, &le) || !errors.Is(err, features.ErrInvalidCSV) {
				t.Fatalf("error %v, want a LoadError", err)
			}
			if le.Line != tc.line || le.Column != tc.column || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q (line %d, column %q), want line %d, column %q, containing %q", err, le.Line, le.Column, tc.line, tc.column, tc.msg)
			}
		})
	}
	st, err := e.backend.State(context.Background(), "typed")
	if err != nil || st.Generation != 0 {
		t.Errorf("state after bad files: %+v, %v (want generation 0: nothing written)", st, err)
	}
	for _, id := range []string{"c0", "c1", "c2498"} {
		if v := get(t, e.store, "typed", id, "score"); v.Statuses[0] != features.StatusNotFound {
			t.Errorf("%s was written by a bad file", id)
		}
	}
}

func testTypeConflict(t *testing.T, e *env) {
	load(t, e.store, "typed", "customer,count\nc1,5\n", features.LoadOptions{})
	changed, err := features.ParseViews([]byte(strings.Replace(TypedViewYAML, "type: int64", "type: string", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s2 := e.newStore(t, changed, nil)
	_, err = s2.Load(context.Background(), "typed", strings.NewReader("customer,count\nc1,five\n"), features.LoadOptions{})
	if !errors.Is(err, features.ErrTypeConflict) {
		t.Errorf("load with a changed type: %v", err)
	}
	// The backend refuses it too (a load racing a definition change).
	_, err = e.backend.Write(context.Background(), features.Batch{View: "typed", LoadedAt: T0,
		Types: map[string]features.ValueType{"count": features.String},
		Rows:  []features.Row{{Entity: "c1", Values: []features.StoredValue{{Feature: "count", Value: "five", EventTime: T0}}}}})
	if !errors.Is(err, features.ErrTypeConflict) {
		t.Errorf("backend write with a changed type: %v", err)
	}
	// Any stored text reads as a string; a stored value that does not
	// parse as the feature's type is an error, not a guess.
	if v, err := s2.Get(context.Background(), "typed", "c1", []string{"count"}); err != nil || v.Values[0].Str() != "5" {
		t.Errorf("int64 text read as string: %v, %v", v.Values, err)
	}
	asBool, err := features.ParseViews([]byte(strings.Replace(TypedViewYAML, "{name: count, type: int64, default: 7}", "{name: count, type: bool, default: false}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.newStore(t, asBool, nil).Get(context.Background(), "typed", "c1", []string{"count"}); !errors.Is(err, features.ErrStoredValue) {
		t.Errorf("int64 read as bool: %v", err)
	}
}

func testCorruptEntry(t *testing.T, e *env) {
	load(t, e.store, "typed", "customer,score\nc1,1\n", features.LoadOptions{})
	for _, junk := range [][]byte{nil, {1}, {9, 9, 9}, []byte("\x01\x05\x02\x01x")} {
		if err := e.cache.Set(context.Background(), cache.UserFeatures(), features.CacheKey("typed", "c1"), junk, 0); err != nil {
			t.Fatal(err)
		}
		wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{1.0}, features.StatusPresent, T0)
	}
	before := counter(t, e, "typed", "hit")
	wantVector(t, get(t, e.store, "typed", "c1", "score"), []any{1.0}, features.StatusPresent, T0)
	if counter(t, e, "typed", "hit") != before+1 {
		t.Error("the corrupt entry was not replaced")
	}
}

func testBatchOrder(t *testing.T, e *env) {
	load(t, e.store, "typed", "customer,score\nc1,1\nc2,2\n", features.LoadOptions{})
	vs, err := e.store.GetBatch(context.Background(), "typed", []string{"c2", "zz", "c1", "c2"}, []string{"score"})
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	for _, v := range vs {
		got = append(got, v.Values[0].Any(), v.Statuses[0].String())
	}
	want := []any{2.0, "PRESENT", -1.5, "NOT_FOUND", 1.0, "PRESENT", 2.0, "PRESENT"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := counter(t, e, "typed", "miss") + counter(t, e, "typed", "not_found"); n != 3 {
		t.Errorf("%v lookups counted, want 3 (distinct entities)", n)
	}
	if vs, err := e.store.GetBatch(context.Background(), "typed", nil, nil); err != nil || len(vs) != 0 {
		t.Errorf("empty batch: %v, %v", vs, err)
	}
}

// counter reads feature_store_reads_total{view,status} of the env's store.
func counter(t testing.TB, e *env, view, status string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "feature_store_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "view") == view && label(m, "status") == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no feature_store_reads_total{view=%q,status=%q}", view, status)
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func series(t testing.TB, e *env) int {
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "feature_store_reads_total" {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func testMetrics(t *testing.T, e *env) {
	if n := series(t, e); n != 3*4 {
		t.Errorf("%d series before any read, want 12 (3 views x hit, miss, not_found, error)", n)
	}
	get(t, e.store, "typed", "x")
	load(t, e.store, "typed", "customer,score\nc1,1\n", features.LoadOptions{})
	get(t, e.store, "typed", "c1")
	get(t, e.store, "typed", "c1")
	get(t, e.store, "typed", "x")
	e.store.Get(context.Background(), "no_such_view", "x", nil)
	e.store.Get(context.Background(), "typed", "x", []string{"no_such_feature"})
	for status, want := range map[string]float64{"hit": 1, "miss": 1, "not_found": 2, "error": 0} {
		if got := counter(t, e, "typed", status); got != want {
			t.Errorf("%s = %v, want %v", status, got, want)
		}
	}
	if n := series(t, e); n != 12 {
		t.Errorf("%d series, want 12: unknown views must not create label values", n)
	}
}

func testConcurrent(t *testing.T, e *env) {
	const n = 300
	file := func(version int) string {
		var b strings.Builder
		b.WriteString("id,x0,x1,x2\n")
		for i := range n {
			fmt.Fprintf(&b, "%d,%d,%d,%d\n", i, version, version, version)
		}
		return b.String()
	}
	load(t, e.store, "host_credit", file(1), features.LoadOptions{})
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	var (
		done   atomic.Bool
		wg     sync.WaitGroup
		failed atomic.Value
	)
	for r := range 4 {
		wg.Go(func() {
			for i := 0; !done.Load() || i < 3; i++ {
				start := (r*37 + i*11) % (n - 50)
				vs, err := e.store.GetBatch(context.Background(), "host_credit", ids[start:start+50], []string{"x0", "x1", "x2"})
				if err != nil {
					failed.Store(err.Error())
					return
				}
				for _, v := range vs {
					a, b, c := v.Values[0].Float64(), v.Values[1].Float64(), v.Values[2].Float64()
					if a != b || b != c || (a != 1 && a != 2) {
						failed.Store(fmt.Sprintf("torn or unknown vector %v", anys(v)))
						return
					}
				}
			}
		})
	}
	e.clock.Advance(time.Second)
	load(t, e.store, "host_credit", file(2), features.LoadOptions{BatchSize: 25})
	done.Store(true)
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		t.Fatal(msg)
	}
	vs, err := e.store.GetBatch(context.Background(), "host_credit", ids, []string{"x0"})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if v.Values[0].Float64() != 2 {
			t.Fatalf("entity %d still %v after the load", i, anys(v))
		}
	}
}

// readCSV returns the header of a demo file, its ids in file order and
// its rows by id, the columns as text.
func readCSV(t testing.TB, path string) ([]string, []string, map[string][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(recs))
	rows := make(map[string][]string, len(recs))
	for _, r := range recs[1:] {
		ids = append(ids, r[0])
		rows[r[0]] = r
	}
	return recs[0], ids, rows
}

// demoRows is how many rows of each demo file testDemoFiles loads.
func demoRows() int {
	if raceEnabled {
		return 3000
	}
	return 30000
}

// headOf returns the header and the first n rows of a CSV file (rows
// without embedded newlines, as the demo files are).
func headOf(t testing.TB, path string, n int) *bytes.Reader {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := 0
	for range n + 1 {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			end = len(data)
			break
		}
		end += i + 1
	}
	return bytes.NewReader(data[:end])
}

func testDemoFiles(t *testing.T, e *env) {
	ctx := context.Background()
	n := demoRows()
	for _, tc := range []struct {
		view, file string
		ignore     []string
		features   int
	}{
		{"host_credit", "data/default_credit_hetero_host.csv", nil, 10},
		{"guest_credit", "data/default_credit_hetero_guest.csv", []string{"y"}, 13},
	} {
		t.Run(tc.view, func(t *testing.T) {
			path := RepoFile(t, tc.file)
			f := headOf(t, path, n)
			if tc.ignore != nil {
				_, err := e.store.Load(ctx, tc.view, f, features.LoadOptions{})
				if !errors.Is(err, features.ErrInvalidCSV) || !strings.Contains(err.Error(), `"y"`) {
					t.Fatalf("label column not refused: %v", err)
				}
				f.Seek(0, 0)
			}
			rep, err := e.store.Load(ctx, tc.view, f, features.LoadOptions{IgnoreColumns: tc.ignore})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Rows != n || rep.Values != n*tc.features || rep.Batches != n/1000 || rep.Invalidated != n {
				t.Errorf("report %+v", rep)
			}
			header, all, rows := readCSV(t, path)
			ids := append(slices.Clone(all[:999]), "no-such-id")
			for range 2 { // database, then cache
				vs, err := e.store.GetBatch(ctx, tc.view, ids, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range vs {
					if len(v.Values) != tc.features {
						t.Fatalf("%d values", len(v.Values))
					}
					for j, name := range v.Features {
						row, ok := rows[ids[i]]
						if !ok {
							if v.Statuses[j] != features.StatusNotFound || v.Values[j].Float64() != 0 {
								t.Fatalf("unknown id: %v %v", v.Statuses[j], v.Values[j].Any())
							}
							continue
						}
						want, _ := strconv.ParseFloat(row[slices.Index(header, name)], 64)
						if v.Statuses[j] != features.StatusPresent || v.Values[j].Float64() != want {
							t.Fatalf("id %s %s: %v %v, want %v", ids[i], name, v.Statuses[j], v.Values[j].Any(), want)
						}
					}
				}
			}
		})
	}
}
