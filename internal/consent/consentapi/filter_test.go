package consentapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startFilter serves the consent service with a 2 MiB body limit and a
// debug log kept in logs.
func startFilter(t *testing.T, authRequired bool) (*fixture, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqldb.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	f := startWith(t, db, dir, authRequired, 2<<20, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return f, logs
}

func (f *fixture) filter(body any) (int, []bool, string) {
	f.t.Helper()
	code, out, _ := f.call("POST", "/consent/v1/subjects/filter", body)
	var usable []bool
	if raw, ok := out["usable"].([]any); ok {
		usable = []bool{}
		for _, v := range raw {
			usable = append(usable, v.(bool))
		}
	}
	return code, usable, errCode(out)
}

func TestFilterSubjects(t *testing.T) {
	f, logs := startFilter(t, false)
	f.createPurpose()
	secret := "ID-FILTER-SECRET-"
	for i := range 4 {
		if code, out, _ := f.call("POST", "/consent/v1/consents", grantBody(fmt.Sprint(secret, i), "partner")); code != 201 {
			t.Fatalf("grant: %d %v", code, out)
		}
	}
	f.call("POST", "/consent/v1/consents", grantBody(secret+"telco", "telco"))
	_, c, _ := f.call("POST", "/consent/v1/consents", grantBody(secret+"withdrawn", "partner"))
	if code, _, _ := f.call("POST", "/consent/v1/consents/"+c["id"].(string)+"/withdraw", nil); code != 200 {
		t.Fatal("withdraw")
	}
	subjects := []string{secret + "0", " " + strings.ToLower(secret) + "1 ", secret + "telco", secret + "withdrawn", secret + "none", "", "a\u0000b", secret + "3"}
	code, usable, ec := f.filter(consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: subjects})
	want := []bool{true, true, false, false, false, false, false, true}
	if code != 200 || fmt.Sprint(usable) != fmt.Sprint(want) {
		t.Fatalf("filter: %d %s %v, want %v", code, ec, usable, want)
	}
	if code, usable, _ := f.filter(consentapi.FilterBody{Party: "telco", Purpose: "credit_risk_assessment", Subjects: subjects[:3]}); code != 200 || fmt.Sprint(usable) != "[false false true]" {
		t.Errorf("for telco: %d %v", code, usable)
	}
	if code, usable, _ := f.filter(consentapi.FilterBody{Party: "partner", Purpose: "marketing", Subjects: subjects[:1]}); code != 200 || fmt.Sprint(usable) != "[false]" {
		t.Errorf("other purpose: %d %v", code, usable)
	}
	if code, usable, _ := f.filter(consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: []string{}}); code != 200 || usable == nil || len(usable) != 0 {
		t.Errorf("no subjects: %d %v", code, usable)
	}
	limit := make([]string, consentapi.MaxFilterSubjects)
	for i := range limit {
		limit[i] = fmt.Sprint(secret, i%5)
	}
	code, usable, _ = f.filter(consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: limit})
	if code != 200 || len(usable) != consentapi.MaxFilterSubjects || !usable[0] || usable[4] {
		t.Errorf("at the limit: %d, %d answers", code, len(usable))
	}

	bad := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"too many subjects", consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: append(limit, "one more")}, 400, "too_many_subjects"},
		{"no subjects field", `{"party":"partner","purpose":"credit_risk_assessment"}`, 400, "invalid_field"},
		{"bad party", consentapi.FilterBody{Party: "Partner Inc", Purpose: "credit_risk_assessment", Subjects: []string{secret + "0"}}, 400, "invalid_field"},
		{"bad purpose", consentapi.FilterBody{Party: "partner", Purpose: "X", Subjects: []string{secret + "0"}}, 400, "invalid_field"},
		{"unknown field", `{"party":"partner","purpose":"credit_risk_assessment","subjects":[],"consents":true}`, 400, "unknown_field"},
		{"subjects not strings", `{"party":"partner","purpose":"credit_risk_assessment","subjects":[1,2]}`, 400, "invalid_json"},
		{"malformed", `{"party":`, 400, "invalid_json"},
		{"two objects", `{"party":"partner","purpose":"credit_risk_assessment","subjects":[]}{}`, 400, "invalid_json"},
		{"oversized", `{"party":"partner","purpose":"credit_risk_assessment","subjects":["` + strings.Repeat("x", 3<<20) + `"]}`, 413, "body_too_large"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, usable, ec := f.filter(tt.body)
			if code != tt.status || usable != nil {
				t.Errorf("got %d %s %v, want %d %s", code, ec, usable, tt.status, tt.code)
			}
			if tt.code != "" && ec != tt.code && !(tt.code == "invalid_json" && ec == "invalid_field") {
				t.Errorf("code %s, want %s", ec, tt.code)
			}
		})
	}
	if strings.Contains(strings.ToLower(logs.String()), strings.ToLower(secret)) {
		t.Errorf("an identifier is in the logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "/consent/v1/subjects/filter") {
		t.Error("the requests were not logged at all (the check above proves nothing)")
	}
}

func TestFilterSubjectsRoles(t *testing.T) {
	f, _ := startFilter(t, true)
	toks := auth.NewTokens(sqlauth.New(f.db))
	ctx := context.Background()
	body := consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: []string{"a", "b"}}
	if code, _, ec := f.filter(body); code != 401 {
		t.Errorf("no token: %d %s", code, ec)
	}
	for _, tt := range []struct {
		role   auth.Role
		status int
	}{{auth.RoleAnalyst, 200}, {auth.RoleOperator, 200}, {auth.RoleAdmin, 200}, {auth.RolePartner, 403}} { // higher roles include analyst
		tok, _, err := toks.Create(ctx, "t-"+string(tt.role), tt.role)
		if err != nil {
			t.Fatal(err)
		}
		f.auth = tok
		if code, usable, ec := f.filter(body); code != tt.status || (code == 200 && len(usable) != 2) {
			t.Errorf("%s: %d %s %v, want %d", tt.role, code, ec, usable, tt.status)
		}
	}
}

// FuzzFilterRequest: whatever the body, the filter answers a JSON 4xx or a
// 200 with one answer per subject, never a 5xx.
func FuzzFilterRequest(f *testing.F) {
	b, _ := json.Marshal(consentapi.FilterBody{Party: "partner", Purpose: "credit_risk_assessment", Subjects: []string{"fuzz-1", "x"}})
	f.Add(string(b))
	f.Add(`{"party":"partner","purpose":"credit_risk_assessment","subjects":["\u0000",""]}`)
	f.Add(`{"party":"partner","purpose":"credit_risk_assessment","subjects":null}`)
	f.Add(`{"party":"-","purpose":"a","subjects":[]}`)
	f.Add(`[]`)
	fx := start(f, false)
	fx.createPurpose()
	fx.call("POST", "/consent/v1/consents", grantBody("fuzz-1", "partner"))
	f.Fuzz(func(t *testing.T, body string) {
		fx.t = t
		code, out, _ := fx.call("POST", "/consent/v1/subjects/filter", body)
		if code >= 500 {
			t.Fatalf("%d for %q: %v", code, body, out)
		}
		if code >= 400 {
			if errCode(out) == "" {
				t.Fatalf("%d without a JSON error for %q", code, body)
			}
			return
		}
		var req consentapi.FilterBody
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatalf("200 for a body that does not decode: %q", body)
		}
		if u, ok := out["usable"].([]any); !ok || len(u) != len(req.Subjects) {
			t.Fatalf("%d answers for %d subjects", len(u), len(req.Subjects))
		}
	})
}
