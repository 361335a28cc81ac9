package featuresapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featuresapi"
	"github.com/fedrisk/fedrisk/internal/features/featurestest"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const prefix = "/score/features"

type fixture struct {
	url    string
	db     *sqldb.DB
	store  *features.Store
	tokens *auth.Tokens
	token  string // sent as a bearer token when set
}

// hostRows returns the header and the first n rows of the host demo file.
func hostRows(t testing.TB, n int) string {
	t.Helper()
	f, err := os.Open(featurestest.RepoFile(t, "data/default_credit_hetero_host.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for i := 0; i <= n && sc.Scan(); i++ {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// start runs the API on a real HTTP server over a SQLite store holding the
// first 300 rows of the host demo file and a few typed rows.
func start(t testing.TB, authRequired bool) *fixture {
	t.Helper()
	db := sqldbtest.OpenSQLite(t, true)
	mem := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	reg := prometheus.NewRegistry()
	clock := featurestest.NewClock(featurestest.T0)
	store, err := features.New(sqlfeatures.New(db), featurestest.Views(t), features.Options{Cache: mem, Registerer: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.Load(ctx, "host_credit", strings.NewReader(hostRows(t, 300)), features.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	typed := "customer,score,count,segment,active,event_timestamp\n" +
		"c1,0.25,42,gold,true,2025-06-01T11:50:00Z\n" +
		"c2,1.5,3,silver,false,2025-06-01T09:00:00Z\n" // older than the view's 1h ttl
	if _, err := store.Load(ctx, "typed", strings.NewReader(typed), features.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(sqlauth.New(db))
	api := featuresapi.New(store, tokens, featuresapi.Options{Prefix: prefix, AuthRequired: authRequired, MaxEntities: 1000})
	mux := http.NewServeMux()
	api.Mount(mux)
	log := slog.New(slog.DiscardHandler)
	h := web.Middleware{Service: "serving", Log: log, Metrics: web.NewMetrics(reg), MaxBodyBytes: 1 << 20}.Wrap(mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, db: db, store: store, tokens: tokens}
}

func (f *fixture) do(t testing.TB, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	return resp.StatusCode, b
}

func (f *fixture) post(t testing.TB, body string) (int, []byte) {
	t.Helper()
	return f.do(t, http.MethodPost, prefix+"/get-online-features", "application/json", body)
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestGetOnlineFeatures(t *testing.T) {
	f := start(t, false)
	// 25115 and 2346 are the first rows of the host file; 999999 is unknown.
	code, body := f.post(t, `{"features":["host_credit:x0","host_credit:x3"],"entities":{"id":[25115,"2346",999999]}}`)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	got := decode[featuresapi.Response](t, body)
	if names := got.Metadata.FeatureNames; fmt.Sprint(names) != "[id x0 x3]" {
		t.Errorf("feature_names %v", names)
	}
	want := []featuresapi.Result{
		{Values: []any{25115.0, "2346", 999999.0}, Statuses: []string{"PRESENT", "PRESENT", "PRESENT"},
			EventTimestamps: []string{"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"}},
		{Values: []any{1.483795, -1.13672, 0.0}, Statuses: []string{"PRESENT", "PRESENT", "NOT_FOUND"},
			EventTimestamps: []string{"2025-06-01T12:00:00Z", "2025-06-01T12:00:00Z", "1970-01-01T00:00:00Z"}},
		{Values: []any{-1.057295, 2.77441, 0.0}, Statuses: []string{"PRESENT", "PRESENT", "NOT_FOUND"},
			EventTimestamps: []string{"2025-06-01T12:00:00Z", "2025-06-01T12:00:00Z", "1970-01-01T00:00:00Z"}},
	}
	if fmt.Sprint(got.Results) != fmt.Sprint(want) {
		t.Errorf("results\n got %v\nwant %v", got.Results, want)
	}
	// Integers stay integers in the echo: 25115, not 25115.0.
	if !bytes.Contains(body, []byte(`"values":[25115,"2346",999999]`)) {
		t.Errorf("entity column not echoed as sent: %s", body)
	}
}

// TestGolden pins the whole response shape: two views, typed values,
// every status, full feature names.
func TestGolden(t *testing.T) {
	f := start(t, false)
	code, body := f.post(t, `{"features":["typed:score","typed:count","typed:segment","typed:active","host_credit:x0"],
		"entities":{"customer":["c1","c2","nobody"],"id":["25115","2346","1"]},"full_feature_names":true}`)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "get-online-features.golden.json")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("response differs from %s (run with -update if the change is intended):\n%s", golden, pretty.Bytes())
	}
}

func TestBadRequests(t *testing.T) {
	f := start(t, false)
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf(`"%d"`, i)
	}
	tooMany := `{"features":["host_credit:x0"],"entities":{"id":[` + strings.Join(many, ",") + `]}}`
	refs := make([]string, 501)
	for i := range refs {
		refs[i] = `"host_credit:x0"`
	}
	tooManyRefs := `{"features":[` + strings.Join(refs, ",") + `],"entities":{"id":["1"]}}`
	ids := `"entities":{"id":["1"]}`
	cases := []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"unknown view", "application/json", `{"features":["nope:x0"],` + ids + `}`, 422, "unknown_view"},
		{"unknown feature", "application/json", `{"features":["host_credit:x99"],` + ids + `}`, 422, "unknown_feature"},
		{"reference without feature", "application/json", `{"features":["host_credit"],` + ids + `}`, 400, "invalid_reference"},
		{"reference with empty feature", "application/json", `{"features":["host_credit:"],` + ids + `}`, 400, "invalid_reference"},
		{"reference with empty view", "application/json", `{"features":[":x0"],` + ids + `}`, 400, "invalid_reference"},
		{"reference with two colons", "application/json", `{"features":["host_credit:x0:x1"],` + ids + `}`, 400, "invalid_reference"},
		{"reference with a space", "application/json", `{"features":["host credit:x0"],` + ids + `}`, 400, "invalid_reference"},
		{"reference not a string", "application/json", `{"features":[1],` + ids + `}`, 400, "invalid_field"},
		{"no features", "application/json", `{"features":[],` + ids + `}`, 400, "missing_features"},
		{"duplicate feature", "application/json", `{"features":["host_credit:x0","host_credit:x0"],` + ids + `}`, 400, "duplicate_feature"},
		{"same name in two views", "application/json", `{"features":["host_credit:x0","guest_credit:x0"],` + ids + `}`, 400, "ambiguous_feature_name"},
		{"too many entities", "application/json", tooMany, 400, "too_many_entities"},
		{"too many features", "application/json", tooManyRefs, 400, "too_many_features"},
		{"unknown field", "application/json", `{"features":["host_credit:x0"],` + ids + `,"feature_service":"credit"}`, 400, "unknown_field"},
		{"no entities", "application/json", `{"features":["host_credit:x0"]}`, 400, "missing_entities"},
		{"empty entity list", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[]}}`, 400, "missing_entities"},
		{"entities not an object", "application/json", `{"features":["host_credit:x0"],"entities":["1"]}`, 400, "invalid_entities"},
		{"entity key list not a list", "application/json", `{"features":["host_credit:x0"],"entities":{"id":"1"}}`, 400, "invalid_entities"},
		{"float entity", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[1.5]}}`, 400, "invalid_entities"},
		{"bool entity", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[true]}}`, 400, "invalid_entities"},
		{"null entity", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[null]}}`, 400, "invalid_entities"},
		{"object entity", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[{"a":1}]}}`, 400, "invalid_entities"},
		{"duplicate entity column", "application/json", `{"features":["host_credit:x0"],"entities":{"id":["1"],"id":["2"]}}`, 400, "invalid_entities"},
		{"uneven entity columns", "application/json", `{"features":["host_credit:x0","typed:score"],"entities":{"id":["1","2"],"customer":["c1"]}}`, 400, "invalid_entities"},
		{"missing entity key", "application/json", `{"features":["host_credit:x0"],"entities":{"customer":["1"]}}`, 400, "missing_entity_key"},
		{"unused entity key", "application/json", `{"features":["host_credit:x0"],"entities":{"id":["1"],"customer":["1"]}}`, 400, "unused_entity_key"},
		{"empty entity key", "application/json", `{"features":["host_credit:x0"],"entities":{"id":[""]}}`, 400, "invalid_entity"},
		{"entity key with control characters", "application/json", `{"features":["host_credit:x0"],"entities":{"id":["secret\u0000id"]}}`, 400, "invalid_entity"},
		{"wrong content type", "text/plain", `{"features":["host_credit:x0"],` + ids + `}`, 415, "unsupported_media_type"},
		{"malformed JSON", "application/json", `{"features":["host_credit:x0"`, 400, "invalid_json"},
		{"trailing data", "application/json", `{"features":["host_credit:x0"],` + ids + `} {}`, 400, "invalid_json"},
		{"empty body", "application/json", ``, 400, "invalid_json"},
		{"body too large", "application/json", `{"features":["host_credit:x0"],"entities":{"id":["` + strings.Repeat("1", 2<<20) + `"]}}`, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.do(t, http.MethodPost, prefix+"/get-online-features", tc.ctype, tc.body)
			e := decode[errorBody](t, body)
			if code != tc.status || e.Error.Code != tc.code {
				t.Errorf("%d %s, want %d %s", code, body, tc.status, tc.code)
			}
			if e.Error.Message == "" || strings.Contains(e.Error.Message, "secret") {
				t.Errorf("message %q", e.Error.Message)
			}
		})
	}
	code, body := f.do(t, http.MethodGet, prefix+"/get-online-features", "", "")
	if code != http.StatusMethodNotAllowed || decode[errorBody](t, body).Error.Code != "method_not_allowed" {
		t.Errorf("GET: %d %s", code, body)
	}
}

func TestAuth(t *testing.T) {
	f := start(t, true)
	ctx := context.Background()
	body := `{"features":["host_credit:x0"],"entities":{"id":["25115"]}}`
	if code, b := f.post(t, body); code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", code, b)
	}
	f.token = "frk_not-a-token"
	if code, b := f.post(t, body); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d %s", code, b)
	}
	analyst, _, err := f.tokens.Create(ctx, "dashboards", auth.RoleAnalyst)
	if err != nil {
		t.Fatal(err)
	}
	f.token = analyst
	if code, b := f.post(t, body); code != http.StatusForbidden {
		t.Errorf("analyst: %d %s", code, b)
	}
	if code, b := f.do(t, http.MethodGet, prefix+"/feature-views", "", ""); code != http.StatusOK {
		t.Errorf("analyst lists views: %d %s", code, b)
	}
	for _, role := range []auth.Role{auth.RoleOperator, auth.RoleAdmin} {
		secret, _, err := f.tokens.Create(ctx, "scoring-"+string(role), role)
		if err != nil {
			t.Fatal(err)
		}
		f.token = secret
		if code, b := f.post(t, body); code != http.StatusOK {
			t.Errorf("%s: %d %s", role, code, b)
		}
	}
	partner, _, err := f.tokens.Create(ctx, "host", auth.RolePartner)
	if err != nil {
		t.Fatal(err)
	}
	f.token = partner
	if code, b := f.post(t, body); code != http.StatusForbidden {
		t.Errorf("partner: %d %s", code, b)
	}
}

func TestFeatureViews(t *testing.T) {
	f := start(t, false)
	code, body := f.do(t, http.MethodGet, prefix+"/feature-views", "", "")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	got := decode[featuresapi.ViewsResponse](t, body)
	if len(got.Views) != 3 {
		t.Fatalf("%d views", len(got.Views))
	}
	host := got.Views[0]
	if host.Name != "host_credit" || host.Entity != "id" || host.TTLSeconds != 30*24*3600 || len(host.Features) != 10 || host.Features[0].Type != "float64" {
		t.Errorf("host_credit: %+v", host)
	}
	if !bytes.Contains(body, []byte(`{"name":"segment","type":"string","default":"unknown"}`)) {
		t.Errorf("typed defaults missing: %s", body)
	}
}

// BenchmarkHTTPGetOnlineFeatures: one entity, 10 features, over real HTTP
// on loopback, served from the memory cache.
func BenchmarkHTTPGetOnlineFeatures(b *testing.B) {
	f := start(b, false)
	body := `{"features":["host_credit:x0","host_credit:x1","host_credit:x2","host_credit:x3","host_credit:x4","host_credit:x5","host_credit:x6","host_credit:x7","host_credit:x8","host_credit:x9"],"entities":{"id":[25115]}}`
	f.post(b, body)
	b.ReportAllocs()
	for b.Loop() {
		if code, resp := f.post(b, body); code != http.StatusOK {
			b.Fatalf("%d %s", code, resp)
		}
	}
}
