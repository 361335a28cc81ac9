package demo

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
)

// applyServingSettings sets the scoring settings the demo runs with.
func applyServingSettings(cfg *config.Config, o Options) error {
	cfg.Scoring.Noise = o.Noise
	cfg.Scoring.Model = ModelID
	cfg.Scoring.Purpose = Purpose
	// A budget of 10 ε per subject and day at ε = 1 per fresh release.
	cfg.Scoring.Epsilon, cfg.Scoring.BudgetTotal, cfg.Scoring.BudgetWindow = 1, 10, 24*time.Hour
	cfg.Scoring.BudgetOnExhausted = "refuse"
	cfg.Scoring.Fallback = "degrade"
	return cfg.Validate()
}

// features is stage 4: each party loads its customers' features into its
// own online feature store: the bank by customer id, the partner by the
// per-host subject reference (href) the bank's requests will name.
func (d *Demo) features(ctx context.Context) error {
	d.prog.stage("Load each party's features into its online feature store")
	var rec struct{ Guest, Host int }
	if d.state.get("features", &rec) {
		d.prog.reused("bank %d rows, partner %d rows", rec.Guest, rec.Host)
		return nil
	}
	key, err := d.refKey()
	if err != nil {
		return err
	}
	g, err := d.loadFeatures(ctx, d.Guest, "guest_credit", nil, []string{"y"})
	if err != nil {
		return err
	}
	h, err := d.loadFeatures(ctx, d.Host, "host_credit", consent.HostRefOf(key, hostParty), nil)
	if err != nil {
		return err
	}
	rec.Guest, rec.Host = g, h
	if err := d.state.put("features", rec); err != nil {
		return err
	}
	d.prog.done("bank %d rows (view guest_credit), partner %d rows (view host_credit, keyed by href)", g, h)
	return nil
}

func (d *Demo) refKey() ([]byte, error) {
	v, err := secretFile(d.opts.Dir + "/subject_ref.key")
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(v)
}

// loadFeatures loads p's customers file into view, rekeyed when rekey is
// set, through p's own database and cache (so the node sees the new values
// at once).
func (d *Demo) loadFeatures(ctx context.Context, p *Party, view string, rekey func(string) (string, error), ignore []string) (int, error) {
	views, err := features.ExampleViews()
	if err != nil {
		return 0, err
	}
	store, err := features.New(sqlfeatures.New(p.Node.DB()), views, features.Options{Cache: p.Node.Cache()})
	if err != nil {
		return 0, err
	}
	f, err := os.Open(p.Input)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var src interface {
		Read([]byte) (int, error)
		Seek(int64, int) (int64, error)
	} = f
	if rekey != nil {
		r, err := features.RekeyCSV(f, "id", rekey)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.Name, err)
		}
		src = r
	}
	rep, err := store.Load(ctx, view, src, features.LoadOptions{IgnoreColumns: ignore,
		Progress: func(done, total int) { d.prog.update(int64(done), int64(total)) }})
	if err != nil {
		return 0, fmt.Errorf("load %s's features: %w", p.Name, err)
	}
	return rep.Rows, nil
}

// scoreOne asks the bank's /score for subject under its consent.
func (d *Demo) scoreOne(ctx context.Context, subject, consentID string) (servingapi.ScoreAnswer, error) {
	var out servingapi.ScoreAnswer
	_, err := d.Guest.Clients[config.ServiceServing].Do(ctx, "POST", "/score",
		servingapi.ScoreBody{Subject: subject, ConsentID: consentID, Model: ModelID}, &out)
	return out, err
}

// score is stage 7: sample applicants are scored at the bank; a subject
// who withdrew is refused.
func (d *Demo) score(ctx context.Context) error {
	d.prog.stage("Score sample applicants across both parties")
	ids := d.scoredSubjects()
	if len(ids) == 0 {
		return fmt.Errorf("no consented subject to score")
	}
	var lat []float64
	for i := range d.opts.Samples {
		id := ids[i%len(ids)]
		t0 := time.Now()
		out, err := d.scoreOne(ctx, id, d.consentRec.ActiveIDs[id])
		if err != nil {
			return fmt.Errorf("score an applicant: %w", err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		d.Result.Scored++
		if out.Degraded {
			d.Result.Degraded++
		}
		if i == 0 {
			d.firstScore = out
		}
		d.prog.update(int64(i+1), int64(d.opts.Samples))
	}
	d.Result.LatencyMs = percentiles(lat)
	for id, cid := range d.consentRec.WithdrawnIDs {
		_, err := d.scoreOne(ctx, id, cid)
		if err == nil {
			return fmt.Errorf("a subject who withdrew was scored")
		}
		d.Result.RefusedWithdrawn = apiclient.CodeOf(err)
		break
	}
	d.prog.done("%d scores, %d degraded; p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; withdrawn subject refused: %s",
		d.Result.Scored, d.Result.Degraded, d.Result.LatencyMs.P50, d.Result.LatencyMs.P95, d.Result.LatencyMs.P99, d.Result.RefusedWithdrawn)
	return nil
}

// drainBudget is stage 8: the partner's data about one subject changes
// between requests, so each score needs a fresh noisy release that costs ε,
// until the subject's budget for the day is spent and the partner refuses
// (the bank then answers a guest-only score marked degraded). Repeating a
// request over unchanged data is free: the same released value comes back.
func (d *Demo) drainBudget(ctx context.Context) error {
	d.prog.stage("Drain one subject's privacy budget at the partner")
	if d.opts.Noise == "none" {
		d.prog.done("skipped: the partner's noise is off, so its releases are exact and cost no budget")
		return nil
	}
	id := d.drainedSubject()
	if id == "" {
		return fmt.Errorf("no consented subject to drain")
	}
	cid := d.consentRec.ActiveIDs[id]
	key, err := d.refKey()
	if err != nil {
		return err
	}
	href, err := consent.HostRefOf(key, hostParty)(id)
	if err != nil {
		return err
	}
	for round := 0; round < 1000; round++ {
		out, err := d.scoreOne(ctx, id, cid)
		if code := apiclient.CodeOf(err); code == "budget_exhausted" {
			// The partner refuses, and by its policy the bank must not
			// score without it.
			d.Result.BudgetRefusal = code
			break
		}
		if err != nil {
			return fmt.Errorf("score the drained subject: %w", err)
		}
		if code := hostFailure(out); code != "" {
			// The partner's policy lets the bank answer guest-only.
			d.Result.BudgetRefusal = code
			break
		}
		d.Result.BudgetReleases++
		d.prog.update(int64(round+1), 11)
		// The partner's record of this subject changes (a new event).
		if err := d.touchHostFeatures(ctx, id, href); err != nil {
			return err
		}
	}
	if d.Result.BudgetRefusal == "" {
		return fmt.Errorf("the budget was never exhausted")
	}
	if d.Result.BudgetReleases == 0 {
		d.prog.done("the subject's budget for this window was already spent by an earlier run: refused (%s)", d.Result.BudgetRefusal)
		return nil
	}
	var page servingapi.BudgetsAnswer
	if _, err := d.Host.Clients[config.ServiceServing].Do(ctx, "GET", "/score/v1/budgets?purpose="+Purpose+"&limit=1000", nil, &page); err != nil {
		return err
	}
	d.Result.BudgetRemaining = 1
	for _, b := range page.Budgets {
		d.Result.BudgetRemaining = min(d.Result.BudgetRemaining, b.RemainingFraction)
	}
	d.prog.done("%d fresh releases, then the partner refused (%s); lowest remaining budget %.2f", d.Result.BudgetReleases, d.Result.BudgetRefusal, d.Result.BudgetRemaining)
	return nil
}

// hostFailure returns the code of the partner's failure in a degraded
// score, or "".
func hostFailure(s servingapi.ScoreAnswer) string {
	if !s.Degraded {
		return ""
	}
	for _, f := range s.HostFailures {
		return f.Code
	}
	return "degraded"
}

// touchHostFeatures writes a new event for the subject at the partner:
// the subject's own values again, with a newer event time (a fresh record
// the partner received), which changes the feature snapshot.
func (d *Demo) touchHostFeatures(ctx context.Context, id, href string) error {
	row, header, err := findRow(d.Host.Input, id)
	if err != nil {
		return err
	}
	views, err := features.ExampleViews()
	if err != nil {
		return err
	}
	store, err := features.New(sqlfeatures.New(d.Host.Node.DB()), views, features.Options{Cache: d.Host.Node.Cache()})
	if err != nil {
		return err
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	row[0] = href
	_ = w.Write(append(append([]string(nil), header...), "event_timestamp"))
	_ = w.Write(append(row, time.Now().UTC().Format(time.RFC3339Nano)))
	w.Flush()
	_, err = store.Load(ctx, "host_credit", strings.NewReader(b.String()), features.LoadOptions{})
	return err
}

// findRow returns the row of id in a CSV file whose first column is id,
// and the header.
func findRow(path, id string) ([]string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, nil, err
	}
	for {
		rec, err := r.Read()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: no row for the drained subject: %w", path, err)
		}
		if rec[0] == id {
			return rec, header, nil
		}
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func percentiles(ms []float64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: s[len(s)-1]}
}

// SharedConsented returns the bank's customers with an active consent
// whom the partner also has, sorted: what PSI over consented customers
// must find.
func (d *Demo) SharedConsented() []string { return d.sharedConsented() }

// ActiveConsents returns sample subjects with an active consent whom the
// partner has, with their consent ids — except the one whose budget the
// demo drains.
func (d *Demo) ActiveConsents() map[string]string {
	out := make(map[string]string, len(d.consentRec.ActiveIDs))
	for _, k := range d.scoredSubjects() {
		out[k] = d.consentRec.ActiveIDs[k]
	}
	return out
}

// drainedSubject is the subject whose budget the demo drains: one the
// scoring stage never scores, so a later run's scores are not refused.
func (d *Demo) drainedSubject() string {
	ids := sortedKeys(d.consentRec.ActiveIDs)
	if len(ids) < 2 {
		return ""
	}
	return ids[len(ids)-1]
}

// scoredSubjects are the sample subjects the scoring stage scores.
func (d *Demo) scoredSubjects() []string {
	ids := sortedKeys(d.consentRec.ActiveIDs)
	if len(ids) < 2 {
		return ids
	}
	return ids[:len(ids)-1]
}
