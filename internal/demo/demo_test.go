package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/demo"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// TestEndToEnd runs the whole federation — two nodes in this process over
// real mutual TLS on 127.0.0.1 — with noise off, and checks every stage's
// outcome against what the parties' data says it must be.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end run takes about a minute")
	}
	// A relative --dir, as the README's command uses by default: the nodes
	// must be handed absolute paths all the same.
	t.Chdir(t.TempDir())
	o := demo.Options{Dir: "fedrisk-demo", Customers: 3000, Missing: 0.05, Withdrawn: 0.03, Noise: "none", Samples: 20}
	if os.Getenv(sqldbtest.PostgresEnv) != "" {
		// Each party gets a schema of its own in the test's schema's database.
		o.PostgresURL = sqldbtest.PostgresURL(t)
		o.Schema = "fedrisk_e2e_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
		t.Cleanup(func() {
			db, err := sqldb.Open(context.Background(), o.PostgresURL, "")
			if err != nil {
				t.Error(err)
				return
			}
			defer db.Close()
			for _, p := range []string{"bank", "partner"} {
				if _, err := db.Exec(`DROP SCHEMA IF EXISTS ` + o.Schema + "_" + p + ` CASCADE`); err != nil {
					t.Error(err)
				}
			}
		})
	}
	if u := os.Getenv("FEDRISK_TEST_REDIS_URL"); u != "" {
		o.RedisURL = u
	}
	var out bytes.Buffer
	o.Out = &out
	ctx := context.Background()
	d, err := demo.Start(ctx, o)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	defer d.Close()
	r := d.Result
	t.Logf("%+v", r)

	t.Run("intersection is exact", func(t *testing.T) {
		if want := len(d.SharedConsented()); r.Intersection != int64(want) || want == 0 {
			t.Errorf("intersection %d, want %d (consented bank customers the partner has)", r.Intersection, want)
		}
		if r.Withdrawn == 0 || r.MissingConsent == 0 {
			t.Errorf("consent filtering not exercised: %+v", r)
		}
	})
	t.Run("AUC parity", func(t *testing.T) {
		if math.Abs(r.AUCFederated-r.AUCCentralized) > 0.005 || r.AUCFederated < 0.65 {
			t.Errorf("AUC federated %.5f, centralized %.5f", r.AUCFederated, r.AUCCentralized)
		}
	})
	t.Run("scores equal the plaintext model", func(t *testing.T) {
		checkPlaintext(t, d)
	})
	t.Run("withdrawn consent refused", func(t *testing.T) {
		if !strings.Contains(r.RefusedWithdrawn, "consent") && !strings.Contains(r.RefusedWithdrawn, "token") {
			t.Errorf("withdrawn subject: refusal code %q", r.RefusedWithdrawn)
		}
	})
	t.Run("noise off: releases are free, the budget stage is skipped", func(t *testing.T) {
		if r.BudgetRefusal != "" || r.BudgetReleases != 0 {
			t.Errorf("budget stage ran with noise off: %+v", r)
		}
	})

	// A second run on the same directory reuses consents, PSI, features and
	// the trained model, and serves with noise on: now releases cost ε and
	// one subject's budget runs out.
	d.Close()
	out.Reset()
	o.Noise = "laplace"
	d2, err := demo.Start(ctx, o)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	defer d2.Close()
	r2 := d2.Result
	t.Run("second run reuses the stages", func(t *testing.T) {
		if n := strings.Count(out.String(), "from an earlier run"); n < 4 {
			t.Errorf("second run reused %d stages:\n%s", n, out.String())
		}
		if r2.ModelVersion != r.ModelVersion || r2.Intersection != r.Intersection || r2.AUCFederated != r.AUCFederated {
			t.Errorf("second run: %+v", r2)
		}
	})
	t.Run("exhausted budget refused", func(t *testing.T) {
		// 10 ε per subject and day at 1 ε per fresh release; the scoring
		// stage never scores the drained subject.
		if r2.BudgetRefusal != "budget_exhausted" || r2.BudgetReleases != 10 || r2.BudgetRemaining != 0 {
			t.Errorf("budget: %d releases, refusal %q, remaining %.3f", r2.BudgetReleases, r2.BudgetRefusal, r2.BudgetRemaining)
		}
		m, err := d2.Host.Clients[config.ServiceServing].Text(ctx, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m, `privacy_budget_remaining{host="partner",purpose="credit_risk_assessment"} 0`) {
			t.Errorf("the host does not report the drained budget:\n%s", grep(m, "privacy_budget"))
		}
	})

	// A third run in the same window: the sample scores still work (the
	// drained subject is never scored), the drained subject stays refused.
	d2.Close()
	out.Reset()
	d3, err := demo.Start(ctx, o)
	if err != nil {
		t.Fatalf("third run: %v\n%s", err, out.String())
	}
	defer d3.Close()
	t.Run("third run", func(t *testing.T) {
		if r3 := d3.Result; r3.Degraded != 0 || r3.BudgetReleases != 0 || r3.BudgetRefusal != "budget_exhausted" {
			t.Errorf("third run: %+v", r3)
		}
	})
	t.Run("each party's console takes the printed token", func(t *testing.T) {
		var summary bytes.Buffer
		d3.PrintSummary(&summary)
		for _, p := range []*demo.Party{d3.Guest, d3.Host} {
			if !strings.Contains(summary.String(), p.ConsoleURL) || !strings.Contains(summary.String(), p.ConsoleToken) {
				t.Errorf("the summary lacks %s's console URL or token", p.Name)
			}
			if _, err := apiclient.New(p.ConsoleURL, nil).Text(ctx, "/login"); err != nil {
				t.Errorf("%s console: %v", p.Name, err)
			}
			c := d3.Guest.Clients[config.ServiceConsent]
			if p == d3.Host {
				c = d3.Host.Clients[config.ServiceConsent]
			}
			who := *c
			who.Token = p.ConsoleToken
			var w consentapi.WhoAmI
			if _, err := who.Do(ctx, "GET", "/consent/v1/whoami", nil, &w); err != nil || !slices.Contains(w.Roles, "admin") {
				t.Errorf("%s console token: %+v %v", p.Name, w, err)
			}
		}
		// The earlier run's token no longer logs in.
		old := *d3.Guest.Clients[config.ServiceConsent]
		old.Token = d2.Guest.ConsoleToken
		if _, err := old.Do(ctx, "GET", "/consent/v1/whoami", nil, nil); apiclient.CodeOf(err) != "unauthorized" {
			t.Errorf("the previous run's console token: %v", err)
		}
	})
	// Every log line of both nodes over the three runs: one key, one
	// meaning (issue 12, finding 13).
	t.Run("no log line repeats a key", func(t *testing.T) {
		for _, party := range []string{"bank", "partner"} {
			data, err := os.ReadFile(filepath.Join(o.Dir, party+".log"))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
			if len(lines) < 10 {
				t.Fatalf("%s.log has %d lines", party, len(lines))
			}
			seen := map[string]bool{}
			for _, line := range lines {
				dup, msg, err := duplicateKey(line)
				if err != nil {
					t.Fatalf("%s.log: not a JSON line: %v", party, err)
				}
				if dup != "" && !seen[msg+dup] {
					seen[msg+dup] = true
					t.Errorf("%s.log: %q carries the key %q twice", party, msg, dup)
				}
			}
		}
	})
	t.Run("options of another setup are refused", func(t *testing.T) {
		d3.Close()
		o2 := o
		o2.Customers = 2000
		if _, err := demo.Start(ctx, o2); err == nil || !strings.Contains(err.Error(), "other options") {
			t.Errorf("a directory set up with other options was reused: %v", err)
		}
	})
}

// checkPlaintext scores sample subjects and compares each probability with
// the model halves applied to the parties' raw rows in the clear.
func checkPlaintext(t *testing.T, d *demo.Demo) {
	ctx := context.Background()
	var g hetero.GuestModel
	var h hetero.HostModel
	half := "/score/v1/models/" + demo.ModelID + "/versions/" + d.Result.ModelVersion + "/half"
	if _, err := d.Guest.Clients[config.ServiceServing].Do(ctx, "GET", half, nil, &g); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Host.Clients[config.ServiceServing].Do(ctx, "GET", half, nil, &h); err != nil {
		t.Fatal(err)
	}
	gt, err := dataset.ReadFile(d.Guest.Input, true)
	if err != nil {
		t.Fatal(err)
	}
	ht, err := dataset.ReadFile(d.Host.Input, false)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for subject, consentID := range d.ActiveConsents() {
		var s servingapi.ScoreAnswer
		if _, err := d.Guest.Clients[config.ServiceServing].Do(ctx, "POST", "/score", servingapi.ScoreBody{Subject: subject, ConsentID: consentID}, &s); err != nil {
			t.Fatal(err)
		}
		ga, err := gt.Align([]string{subject})
		if err != nil {
			t.Fatal(err)
		}
		ha, err := ht.Align([]string{subject})
		if err != nil {
			t.Fatal(err)
		}
		gs, err := g.PartialScore(ga.X.Row(0))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := h.PartialScore(ha.X.Row(0))
		if err != nil {
			t.Fatal(err)
		}
		want := lr.Logistic(gs + hs)
		if s.Degraded || math.Abs(s.ProbabilityOfDefault-want) > 1e-6 {
			t.Errorf("subject %s: probability %.9f (degraded %v), plaintext model %.9f", subject, s.ProbabilityOfDefault, s.Degraded, want)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no subject checked")
	}
}

// duplicateKey returns the first key that an object of the JSON line
// carries twice ("" for none) and the line's msg.
func duplicateKey(line []byte) (dup, msg string, err error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object
	lastKey := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return dup, msg, nil
		}
		if err != nil {
			return "", "", err
		}
		top := (*object)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top != nil {
					top.wantKey = true
				}
				stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
			case '[':
				if top != nil {
					top.wantKey = true
				}
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.wantKey {
				if top.keys[v] && dup == "" {
					dup = v
				}
				top.keys[v], top.wantKey, lastKey = true, false, v
				continue
			}
			if len(stack) == 1 && lastKey == "msg" {
				msg = v
			}
		}
		if top != nil {
			top.wantKey = true
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
