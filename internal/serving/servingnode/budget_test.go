package servingnode_test

import (
	"context"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// noisy is a host with discrete Laplace noise, ε = 1 per release and a
// budget of total ε per subject; releases are reused for window.
func noisy(total float64, window time.Duration) func(*config.Scoring) {
	return func(s *config.Scoring) {
		s.Noise, s.Epsilon, s.Clip, s.BudgetTotal, s.ReleaseWindow = "laplace", 1, 4, total, window
	}
}

// TestRepeatedRequestIsFree: the same subject, model version and features
// within the release window get the same noisy value, charged once.
func TestRepeatedRequestIsFree(t *testing.T) {
	caches := []string{""}
	if u := os.Getenv("FEDRISK_TEST_REDIS_URL"); u != "" {
		caches = append(caches, u)
	}
	for _, redis := range caches {
		name := "memory"
		if redis != "" {
			name = "redis"
		}
		t.Run(name, func(t *testing.T) { testRepeatedRequestIsFree(t, redis) })
	}
}

func testRepeatedRequestIsFree(t *testing.T, redis string) {
	f := newFederation(t)
	g, h := f.pair(t, options{}, options{scoring: noisy(10, time.Hour), redis: redis})
	tok := g.token(t, g.grant(t, f.ids[0]).ID)
	var first servingapi.ScoreAnswer
	for i := range 5 {
		var a servingapi.ScoreAnswer
		if st, code := g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok}, &a); st != 200 || a.Degraded {
			t.Fatalf("score %d: %d %s %+v", i, st, code, a.HostFailures)
		}
		if i == 0 {
			first = a
		} else if a.ProbabilityOfDefault != first.ProbabilityOfDefault {
			t.Fatalf("a repeated request got fresh noise: %v then %v", first.ProbabilityOfDefault, a.ProbabilityOfDefault)
		}
	}
	if v, _ := metric(t, h.reg, "scoring_partials_total", map[string]string{"outcome": "released"}); v != 1 {
		t.Errorf("released %v, want 1", v)
	}
	if v, _ := metric(t, h.reg, "scoring_partials_total", map[string]string{"outcome": "cached"}); v != 4 {
		t.Errorf("cached %v, want 4", v)
	}
	page, err := h.svc.Ledger.List(context.Background(), privacy.Filter{})
	if err != nil || len(page.Balances) != 1 || page.Balances[0].Spent != privacy.OneEpsilon {
		t.Fatalf("ledger: %+v %v", page, err)
	}
	// The budget is the host's own key for the subject (href), never the
	// guest-signed sub, which a guest could vary to buy fresh budget.
	key, err := config.DecodeKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	if got := page.Balances[0].Key.Subject; got != consentHostRef(key, f.ids[0]) {
		t.Errorf("budget subject %q is not the subject's href", got)
	}
}

// TestBudgetExhaustion: a spent budget refuses (429) under the refuse
// policy and degrades the guest's score under the degrade policy; the
// gauges and the admin API show it without raw identifiers.
func TestBudgetExhaustion(t *testing.T) {
	f := newFederation(t)
	g, h := f.pair(t, options{}, options{scoring: noisy(2, time.Millisecond)})
	id := f.ids[3]
	tok := g.token(t, g.grant(t, id).ID)
	body := servingapi.ScoreBody{Subject: id, ConsentToken: tok}
	for i := range 2 {
		time.Sleep(3 * time.Millisecond) // past the release window: a fresh release
		var a servingapi.ScoreAnswer
		if st, code := g.call(t, "POST", g.url+"/score", body, &a); st != 200 || a.Degraded {
			t.Fatalf("score %d: %d %s %+v", i, st, code, a.HostFailures)
		}
	}
	time.Sleep(3 * time.Millisecond)
	if st, code := g.call(t, "POST", g.url+"/score", body, nil); st != http.StatusTooManyRequests || code != serving.CodeBudgetExhausted {
		t.Fatalf("exhausted budget, refuse policy: %d %s", st, code)
	}
	// The host's own answer.
	href := hrefOf(t, f, id)
	if st, code := g.call(t, "POST", h.url+"/score/v1/partial", servingapi.PartialBody{Token: tok, Href: href, Model: modelID, Version: "1"}, nil); st != http.StatusTooManyRequests || code != serving.CodeBudgetExhausted {
		t.Fatalf("host partial: %d %s", st, code)
	}
	if err := h.svc.RefreshBudgets(context.Background()); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"host": "partner", "purpose": purpose}
	if v, ok := metric(t, h.reg, "privacy_budget_remaining", labels); !ok || v != 0 {
		t.Errorf("privacy_budget_remaining %v %v, want 0", v, ok)
	}
	if v, ok := metric(t, h.reg, "privacy_budget_low_subjects", labels); !ok || v != 1 {
		t.Errorf("privacy_budget_low_subjects %v %v, want 1", v, ok)
	}

	// Admin API: the policies, then degrade.
	var ps servingapi.PoliciesAnswer
	if st, code := h.call(t, "GET", h.url+"/score/v1/budgets/policies", nil, &ps); st != 200 || len(ps.Policies) != 1 ||
		ps.Policies[0].TotalEpsilon != 2 || ps.Policies[0].OnExhausted != "refuse" || ps.Policies[0].Window != "24h0m0s" {
		t.Fatalf("policies: %d %s %+v", st, code, ps)
	}
	for _, bad := range []servingapi.PolicyBody{{Window: "0s", TotalEpsilon: 1}, {Window: "24h", TotalEpsilon: -1}, {Window: "24h", TotalEpsilon: 1, OnExhausted: "ignore"}, {Window: "x", TotalEpsilon: 1}} {
		if st, code := h.call(t, "PUT", h.url+"/score/v1/budgets/policies/"+purpose, bad, nil); st != 400 {
			t.Errorf("bad policy %+v: %d %s", bad, st, code)
		}
	}
	var p servingapi.PolicyBody
	if st, code := h.call(t, "PUT", h.url+"/score/v1/budgets/policies/"+purpose, servingapi.PolicyBody{Window: "24h", TotalEpsilon: 2, OnExhausted: "degrade"}, &p); st != 200 || p.OnExhausted != "degrade" {
		t.Fatalf("set policy: %d %s %+v", st, code, p)
	}
	time.Sleep(3 * time.Millisecond)
	var a servingapi.ScoreAnswer
	if st, code := g.call(t, "POST", g.url+"/score", body, &a); st != 200 || !a.Degraded || len(a.HostFailures) != 1 || a.HostFailures[0].Code != serving.CodeBudgetExhausted {
		t.Fatalf("exhausted budget, degrade policy: %d %s %+v", st, code, a)
	}
	// A new window length frees nothing that was spent (issue 12, finding
	// 5), and every change is in the audit log: who, old, new.
	if st, code := h.call(t, "PUT", h.url+"/score/v1/budgets/policies/"+purpose, servingapi.PolicyBody{Window: "86399s", TotalEpsilon: 2, OnExhausted: "degrade"}, &p); st != 200 {
		t.Fatalf("set window 86399s: %d %s", st, code)
	}
	time.Sleep(3 * time.Millisecond)
	if st, code := g.call(t, "POST", g.url+"/score", body, &a); st != 200 || !a.Degraded || len(a.HostFailures) != 1 || a.HostFailures[0].Code != serving.CodeBudgetExhausted {
		t.Fatalf("after a window change: %d %s %+v", st, code, a)
	}
	entries, err := h.node.Resources().Audit.List(context.Background(), sqlaudit.Filter{Action: "privacy.policy.set"})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"window": "24h0m0s", "total": "2ε", "on_exhausted": "refuse"},
		{"window": "24h0m0s", "total": "2ε", "on_exhausted": "degrade", "old_window": "24h0m0s", "old_total": "2ε", "old_on_exhausted": "refuse"},
		{"window": "23h59m59s", "total": "2ε", "on_exhausted": "degrade", "old_window": "24h0m0s", "old_total": "2ε", "old_on_exhausted": "degrade"},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d policy changes audited, want %d: %+v", len(entries), len(want), entries)
	}
	for i, e := range entries {
		actor := "local:loopback"
		if i == 0 {
			actor = "config"
		}
		if e.Actor != actor || e.Object != purpose || !maps.Equal(e.Details, want[i]) {
			t.Errorf("audit entry %d: %s %s %v, want %s %s %v", i, e.Actor, e.Object, e.Details, actor, purpose, want[i])
		}
	}
	var ba servingapi.BudgetsAnswer
	st, code := h.call(t, "GET", h.url+"/score/v1/budgets?limit=10", nil, &ba)
	if st != 200 || len(ba.Budgets) != 1 || ba.Budgets[0].Party != "bank" || ba.Budgets[0].RemainingFraction != 0 || ba.Budgets[0].SpentEpsilon != 2 {
		t.Fatalf("budgets: %d %s %+v", st, code, ba)
	}
	// The host's own reference for the subject, never the identifier.
	if ba.Budgets[0].Subject != href || strings.Contains(ba.Budgets[0].Subject, id) {
		t.Errorf("the budget names the subject by %q", ba.Budgets[0].Subject)
	}
	if st, code := h.call(t, "GET", h.url+"/score/v1/budgets?limit=0", nil, nil); st != 400 {
		t.Errorf("limit 0: %d %s", st, code)
	}
}

// TestConcurrentRequestsNeverOverspend: 200 concurrent scores of one
// subject spend at most the budget, on SQLite and (with
// FEDRISK_TEST_POSTGRES_URL) PostgreSQL.
func TestConcurrentRequestsNeverOverspend(t *testing.T) {
	backends := []string{"sqlite"}
	if os.Getenv(sqldbtest.PostgresEnv) != "" {
		backends = append(backends, "postgres")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			f := newFederation(t)
			host := options{scoring: noisy(5, time.Millisecond)}
			if backend == "postgres" {
				host.database = sqldbtest.PostgresURL(t)
			}
			g, h := f.pair(t, options{scoring: func(s *config.Scoring) { s.HostDeadline = 20 * time.Second }}, host)
			id := f.ids[5]
			tok := g.token(t, g.grant(t, id).ID)
			const n = 200
			var wg sync.WaitGroup
			statuses := make([]int, n)
			degraded := make([]bool, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var a servingapi.ScoreAnswer
					statuses[i], _ = g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: id, ConsentToken: tok}, &a)
					degraded[i] = a.Degraded
				}()
			}
			wg.Wait()
			ok, refused := 0, 0
			for i, st := range statuses {
				switch {
				case st == 200 && !degraded[i]:
					ok++
				case st == http.StatusTooManyRequests:
					refused++
				default:
					t.Errorf("request %d: status %d degraded %v", i, st, degraded[i])
				}
			}
			released, _ := metric(t, h.reg, "scoring_partials_total", map[string]string{"outcome": "released"})
			page, err := h.svc.Ledger.List(context.Background(), privacy.Filter{})
			if err != nil || len(page.Balances) != 1 {
				t.Fatalf("ledger: %+v %v", page, err)
			}
			b := page.Balances[0]
			t.Logf("%d scored (%v fresh releases), %d refused; spent %v of %v", ok, released, refused, b.Spent, b.Total)
			if b.Spent > b.Total || b.Remaining < 0 || released > 5 || b.Spent != privacy.Amount(released)*privacy.OneEpsilon {
				t.Errorf("overspent: spent %v of %v, %v releases", b.Spent, b.Total, released)
			}
			if refused == 0 || ok+refused != n {
				t.Errorf("%d scored, %d refused", ok, refused)
			}
		})
	}
}
