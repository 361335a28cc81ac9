package consentapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
)

func TestWhoAmI(t *testing.T) {
	f := start(t, true)
	toks := auth.NewTokens(sqlauth.New(f.db))
	for _, tt := range []struct {
		role auth.Role
		want []string
	}{
		{auth.RoleAdmin, []string{"admin", "operator", "analyst"}},
		{auth.RoleOperator, []string{"operator", "analyst"}},
		{auth.RoleAnalyst, []string{"analyst"}},
		{auth.RolePartner, []string{"partner"}},
	} {
		t.Run(string(tt.role), func(t *testing.T) {
			secret, _, err := toks.Create(context.Background(), "who-"+string(tt.role), tt.role)
			if err != nil {
				t.Fatal(err)
			}
			f.auth = secret
			code, out, hdr := f.call("GET", "/consent/v1/whoami", nil)
			if code != 200 || out["kind"] != "token" || out["name"] != "who-"+string(tt.role) {
				t.Fatalf("whoami: %d %v", code, out)
			}
			var roles []string
			for _, r := range out["roles"].([]any) {
				roles = append(roles, r.(string))
			}
			if !slices.Equal(roles, tt.want) {
				t.Errorf("roles %v, want %v", roles, tt.want)
			}
			if hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
			}
		})
	}
	f.auth = ""
	if code, out, _ := f.call("GET", "/consent/v1/whoami", nil); code != 401 {
		t.Errorf("no token with AUTH_REQUIRED: %d %v", code, out)
	}
	f.auth = "frk_not-a-token"
	if code, out, _ := f.call("GET", "/consent/v1/whoami", nil); code != 401 {
		t.Errorf("unknown token: %d %v", code, out)
	}

	local := start(t, false)
	if code, out, _ := local.call("GET", "/consent/v1/whoami", nil); code != 200 || out["kind"] != "local" || len(out["roles"].([]any)) != 4 {
		t.Errorf("loopback caller without auth: %d %v", code, out)
	}
}

func TestAuditRoutes(t *testing.T) {
	f := start(t, false)
	f.createPurpose()
	for i := range 5 {
		if code, out, _ := f.call("POST", "/consent/v1/consents", grantBody(fmt.Sprintf("audit-subject-%d", i), "partner")); code != 201 {
			t.Fatalf("grant: %d %v", code, out)
		}
	}
	var page consentapi.AuditPage
	get := func(path string, out any) int {
		t.Helper()
		req, _ := http.NewRequest("GET", f.url+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	if code := get("/consent/v1/audit?limit=500", &page); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	grants := 0
	for i, e := range page.Entries {
		if e.Seq != int64(i+1) || len(e.Hash) != 64 {
			t.Errorf("entry %d: %+v", i, e)
		}
		if e.Action == "consent.grant" {
			grants++
			if e.Subject == "" || e.Object == "" {
				t.Errorf("grant entry without pseudonym or consent id: %+v", e)
			}
		}
		for _, s := range []string{e.Subject, e.Object, e.Actor} {
			if len(s) > 0 && (s == "audit-subject-0" || s == "audit-subject-1") {
				t.Errorf("raw identifier in the audit page: %+v", e)
			}
		}
	}
	if grants != 5 || page.Head != int64(len(page.Entries)) {
		t.Errorf("%d grants, head %d, %d entries", grants, page.Head, len(page.Entries))
	}
	// Paging and the action filter.
	var second consentapi.AuditPage
	if code := get("/consent/v1/audit?after=2&limit=2&action=consent.grant", &second); code != 200 || len(second.Entries) != 2 {
		t.Fatalf("filtered page: %d %+v", code, second)
	}
	for _, e := range second.Entries {
		if e.Seq <= 2 || e.Action != "consent.grant" {
			t.Errorf("filtered entry %+v", e)
		}
	}
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=501", "action=a%20b", "action=" + strings.Repeat("a", 129)} {
		if code := get("/consent/v1/audit?"+q, nil); code != 400 {
			t.Errorf("query %s: %d, want 400", q, code)
		}
	}

	var rep consentapi.AuditReport
	if code := get("/consent/v1/audit/verify", &rep); code != 200 || !rep.Intact || rep.Entries != page.Head || rep.FirstBad != nil {
		t.Fatalf("verify intact log: %d %+v", code, rep)
	}
	// Alter one entry behind the log's back: verification names it.
	if _, err := f.db.Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	rep = consentapi.AuditReport{}
	if code := get("/consent/v1/audit/verify", &rep); code != 200 || rep.Intact || rep.FirstBad == nil || rep.FirstBad.Seq != 3 {
		t.Errorf("verify altered log: %d %+v", code, rep)
	}
}

func TestAuditNeedsAnalyst(t *testing.T) {
	f := start(t, true)
	toks := auth.NewTokens(sqlauth.New(f.db))
	partner, _, _ := toks.Create(context.Background(), "peer-like", auth.RolePartner)
	analyst, _, _ := toks.Create(context.Background(), "ana", auth.RoleAnalyst)
	for _, path := range []string{"/consent/v1/audit", "/consent/v1/audit/verify"} {
		f.auth = ""
		if code, _, _ := f.call("GET", path, nil); code != 401 {
			t.Errorf("%s without a token: %d", path, code)
		}
		f.auth = partner
		if code, _, _ := f.call("GET", path, nil); code != 403 {
			t.Errorf("%s as partner: %d", path, code)
		}
		f.auth = analyst
		if code, out, _ := f.call("GET", path, nil); code != 200 {
			t.Errorf("%s as analyst: %d %v", path, code, out)
		}
	}
}

func TestOpenAPICoversConsoleRoutes(t *testing.T) {
	f := start(t, false)
	code, doc, _ := f.call("GET", "/consent/openapi.json", nil)
	if code != 200 {
		t.Fatal(code)
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/consent/v1/whoami", "/consent/v1/audit", "/consent/v1/audit/verify"} {
		if m, ok := paths[p].(map[string]any); !ok || m["get"] == nil {
			t.Errorf("GET %s is not in openapi.json", p)
		}
	}
}

// FuzzParseAuditQuery: any query either parses into bounds the store
// accepts or is a 400, never a panic.
func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"", "after=3&limit=10", "action=consent.grant", "limit=99999", "after=-5", "action=%00", "after=9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := consentapi.ParseAuditQuery(q)
		if err != nil {
			return
		}
		if got.After < 0 || got.Limit < 1 || got.Limit > consentapi.MaxAuditLimit || len(got.Action) > 128 {
			t.Fatalf("%q parsed to %+v", raw, got)
		}
	})
}
