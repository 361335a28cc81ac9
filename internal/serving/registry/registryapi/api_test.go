package registryapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registrytest"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

const model = "credit-risk"

type fixture struct {
	url     string
	handler http.Handler
	reg     *registry.Registry
	tokens  *auth.Tokens
	token   string
}

// newFixture builds the API over a SQLite registry holding the guest
// halves of versions 1, 2 and 3 of credit-risk.
func newFixture(t testing.TB, authRequired bool) *fixture {
	t.Helper()
	db := sqldbtest.OpenSQLite(t, true)
	mem := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	clock := registrytest.NewClock(registrytest.T0)
	reg := registry.New(sqlregistry.New(db), mem, registry.Options{Now: clock.Now})
	ctx := context.Background()
	for _, v := range []string{"1", "2", "3"} {
		if _, err := reg.NextVersion(ctx, model); err != nil {
			t.Fatal(err)
		}
		if err := reg.Register(ctx, registry.RoleGuest, model, v, registrytest.GuestHalf(t, model, v, 0.5), []byte(`{"auc": 0.73}`)); err != nil {
			t.Fatal(err)
		}
	}
	tokens := auth.NewTokens(sqlauth.New(db))
	mux := http.NewServeMux()
	registryapi.New(reg, tokens, registryapi.Options{AuthRequired: authRequired}).Mount(mux)
	log := slog.New(slog.DiscardHandler)
	h := web.Middleware{Service: "serving", Log: log, Metrics: web.NewMetrics(prometheus.NewRegistry()), MaxBodyBytes: 1 << 20}.Wrap(mux)
	return &fixture{handler: h, reg: reg, tokens: tokens}
}

// start serves the fixture over real HTTP on 127.0.0.1.
func start(t *testing.T, authRequired bool) *fixture {
	f := newFixture(t, authRequired)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
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
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return resp.StatusCode, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

type errorBody struct {
	Error struct{ Code, Message string } `json:"error"`
}

func TestListAndShow(t *testing.T) {
	f := start(t, false)
	code, body := f.do(t, "GET", "/score/v1/models", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	list := decode[registryapi.ModelsResponse](t, body)
	if len(list.Models) != 1 || list.Models[0].ID != model || len(list.Models[0].Versions) != 3 || len(list.Models[0].Labels) != 0 {
		t.Fatalf("models %s", body)
	}
	if strings.Contains(string(body), `"half"`) {
		t.Errorf("the list carries half documents: %s", body)
	}

	code, body = f.do(t, "GET", "/score/v1/models/"+model+"/versions/2", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	v := decode[registryapi.VersionBody](t, body)
	if v.Version != "2" || v.Role != "guest" || len(v.Digest) != 64 || string(v.Card) != `{"auc":0.73}` || v.Half != nil ||
		!v.Created.Equal(registrytest.T0) || v.RegisteredBy != "training" {
		t.Errorf("version %s", body)
	}

	code, body = f.do(t, "GET", "/score/v1/models/"+model+"/versions/2?half=1&role=guest", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	v = decode[registryapi.VersionBody](t, body)
	var half struct {
		Format, ModelID, Version string
		Bias                     float64
	}
	if err := json.Unmarshal(v.Half, &half); err != nil || half.Version != "2" || half.Bias != 0.5 {
		t.Errorf("half %s (%v)", v.Half, err)
	}

	for path, wantCode := range map[string]int{
		"/score/v1/models/" + model + "/versions/stable":       404,
		"/score/v1/models/" + model + "/versions/4":            404,
		"/score/v1/models/" + model + "/versions/2?role=host":  404,
		"/score/v1/models/nope":                                404,
		"/score/v1/models/nope/versions/1":                     404,
		"/score/v1/models/" + model + "/versions/latest":       400,
		"/score/v1/models/" + model + "/versions/01":           400,
		"/score/v1/models/" + model + "/versions/1?half=2":     400,
		"/score/v1/models/" + model + "/versions/1?role=judge": 400,
		"/score/v1/models/bad%20id":                            400,
	} {
		code, body := f.do(t, "GET", path, "")
		if code != wantCode {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, wantCode)
		}
		if e := decode[errorBody](t, body); e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("GET %s: error body %s", path, body)
		}
	}
}

func TestPromoteRollback(t *testing.T) {
	f := start(t, false)
	post := func(path, body string, wantCode int) registryapi.ChangeBody {
		t.Helper()
		code, b := f.do(t, "POST", "/score/v1/models/"+model+path, body)
		if code != wantCode {
			t.Fatalf("POST %s %s: %d %s, want %d", path, body, code, b, wantCode)
		}
		if code != 200 {
			return registryapi.ChangeBody{}
		}
		return decode[registryapi.ChangeBody](t, b)
	}
	stable := func() string {
		t.Helper()
		code, b := f.do(t, "GET", "/score/v1/models/"+model+"/versions/stable", "")
		if code != 200 {
			return fmt.Sprint(code)
		}
		return decode[registryapi.VersionBody](t, b).Version
	}

	c := post("/promote", `{"version":"1"}`, 200)
	if !c.Changed || c.Label != "stable" || c.Version != "1" || c.Previous != "" || c.Actor != "local:loopback" {
		t.Errorf("promote %+v", c)
	}
	_, b := f.do(t, "POST", "/score/v1/models/"+model+"/rollback", `{}`)
	if e := decode[errorBody](t, b); e.Error.Code != "nothing_to_roll_back" {
		t.Errorf("rollback of the first promotion: %s", b)
	}
	post("/rollback", `{"label":"stable"}`, 409)
	post("/promote", `{"version":"2","label":"stable"}`, 200)
	if got := stable(); got != "2" {
		t.Errorf("stable = %s after promoting 2", got)
	}
	if c := post("/promote", `{"version":"2"}`, 200); c.Changed {
		t.Errorf("promoting the current version: %+v", c)
	}
	post("/promote", `{"version":"3","label":"canary"}`, 200)
	c = post("/rollback", `{"label":"stable"}`, 200)
	if c.Version != "1" || c.Previous != "2" || c.Action != "rollback" {
		t.Errorf("rollback %+v", c)
	}
	if got := stable(); got != "1" {
		t.Errorf("stable = %s after the rollback", got)
	}

	code, body := f.do(t, "GET", "/score/v1/models/"+model, "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	m := decode[registryapi.ModelBody](t, body)
	if m.Labels["stable"] != "1" || m.Labels["canary"] != "3" || len(m.History) != 4 {
		t.Errorf("model %s", body)
	}
	for _, v := range m.Versions {
		want := map[string]string{"1": "[stable]", "2": "[]", "3": "[canary]"}[v.Version]
		if fmt.Sprint(v.Labels) != want {
			t.Errorf("version %s labels %v, want %s", v.Version, v.Labels, want)
		}
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	f := start(t, false)
	if _, err := f.reg.Promote(context.Background(), model, "1", "stable", "test"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, body string
		code             int
		errCode          string
	}{
		{"not JSON", "/promote", `{"version":`, 400, ""},
		{"unknown field", "/promote", `{"version":"2","force":true}`, 400, ""},
		{"trailing data", "/promote", `{"version":"2"} {}`, 400, ""},
		{"no version", "/promote", `{"label":"stable"}`, 400, "invalid_request"},
		{"version number", "/promote", `{"version":2}`, 400, ""},
		{"bad version", "/promote", `{"version":"v2"}`, 400, "invalid_request"},
		{"bad label", "/promote", `{"version":"2","label":"prod"}`, 400, "invalid_request"},
		{"unknown version", "/promote", `{"version":"9"}`, 404, "not_found"},
		{"rollback bad label", "/rollback", `{"label":"beta"}`, 400, "invalid_request"},
		{"rollback unknown field", "/rollback", `{"label":"stable","to":"1"}`, 400, ""},
		{"rollback nothing", "/rollback", `{"label":"canary"}`, 409, "nothing_to_roll_back"},
		{"rollback empty body", "/rollback", ``, 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := f.do(t, "POST", "/score/v1/models/"+model+c.path, c.body)
			e := decode[errorBody](t, body)
			if code != c.code || e.Error.Message == "" || (c.errCode != "" && e.Error.Code != c.errCode) {
				t.Errorf("%d %s, want %d %s", code, body, c.code, c.errCode)
			}
		})
	}
	for _, path := range []string{"/score/v1/models/nope/promote", "/score/v1/models/a%2Fb/promote"} {
		if code, body := f.do(t, "POST", path, `{"version":"1"}`); code != 404 && code != 400 {
			t.Errorf("POST %s: %d %s", path, code, body)
		}
	}
	m, err := f.reg.Model(context.Background(), model)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.History) != 1 || m.Labels["stable"] != "1" || len(m.Labels) != 1 {
		t.Errorf("bad requests changed the labels: %+v %+v", m.Labels, m.History)
	}
}

func TestAuth(t *testing.T) {
	f := start(t, true)
	ctx := context.Background()
	if code, _ := f.do(t, "GET", "/score/v1/models", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	analyst, _, err := f.tokens.Create(ctx, "dashboards", auth.RoleAnalyst)
	if err != nil {
		t.Fatal(err)
	}
	operator, _, err := f.tokens.Create(ctx, "release", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	partner, _, err := f.tokens.Create(ctx, "host", auth.RolePartner)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		token, method, path, body string
		code                      int
	}{
		{analyst, "GET", "/score/v1/models", "", 200},
		{analyst, "GET", "/score/v1/models/" + model + "/versions/1", "", 200},
		{analyst, "GET", "/score/v1/models/" + model + "/versions/1?half=1", "", 403},
		{analyst, "GET", "/score/v1/models/" + model + "/versions/1/half", "", 403},
		{analyst, "POST", "/score/v1/models/" + model + "/promote", `{"version":"1"}`, 403},
		{analyst, "POST", "/score/v1/models/" + model + "/rollback", `{}`, 403},
		{partner, "GET", "/score/v1/models", "", 403},
		{"wrong", "GET", "/score/v1/models", "", 401},
		{operator, "GET", "/score/v1/models/" + model + "/versions/1?half=1", "", 200},
		{operator, "POST", "/score/v1/models/" + model + "/promote", `{"version":"1"}`, 200},
	} {
		f.token = c.token
		if code, body := f.do(t, c.method, c.path, c.body); code != c.code {
			t.Errorf("%s %s as %.8s: %d %s, want %d", c.method, c.path, c.token, code, body, c.code)
		}
	}
	m, err := f.reg.Model(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.History) != 1 || m.History[0].Actor != "token:release" {
		t.Errorf("history %+v", m.History)
	}
}

func TestHalfDocument(t *testing.T) {
	f := start(t, false)
	resp, err := http.Get(f.url + "/score/v1/models/" + model + "/versions/3/half")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := registrytest.GuestHalf(t, model, "3", 0.5)
	sum := sha256.Sum256(b)
	if resp.StatusCode != 200 || string(b) != string(want) || resp.Header.Get(registryapi.DigestHeader) != hex.EncodeToString(sum[:]) ||
		resp.Header.Get(registryapi.VersionHeader) != "3" || resp.Header.Get(registryapi.RoleHeader) != "guest" {
		t.Errorf("%d %v\n%s", resp.StatusCode, resp.Header, b)
	}
	for path, wantCode := range map[string]int{
		"/versions/stable/half":          404,
		"/versions/3/half?role=host":     404,
		"/versions/3/half?role=observer": 400,
		"/versions/x/half":               400,
	} {
		if code, body := f.do(t, "GET", "/score/v1/models/"+model+path, ""); code != wantCode {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, wantCode)
		}
	}
}
