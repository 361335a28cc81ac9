package consoleapi

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/fedrisk/fedrisk/internal/console"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
)

// MaxBudgetsRead bounds the budgets one page load reads.
const MaxBudgetsRead = 50000

type outcomeCount struct {
	Outcome string
	Count   float64
}

type budgetsData struct {
	Host       bool
	Summary    console.BudgetSummary
	More       bool
	Policies   []servingapi.PolicyBody
	Outcomes   []outcomeCount // releases (host) or scores (guest) by outcome
	MetricsErr string
}

// budgets: at a host, the distribution of remaining budgets, the subjects
// below 0.2, the policies and the releases; at a guest, what scoring met.
func (a *API) budgets(w http.ResponseWriter, r *http.Request, rq *req) error {
	d := budgetsData{Host: a.opts.Role == "host"}
	metric := "scoring_requests_total"
	if d.Host {
		metric = "scoring_partials_total"
		bs, more, err := rq.api.budgets(r.Context(), MaxBudgetsRead)
		if err != nil {
			return err
		}
		list := make([]console.Budget, len(bs))
		for i, b := range bs {
			end, _ := time.Parse(time.RFC3339, b.WindowEnd)
			list[i] = console.Budget{Party: b.Party, SubjectRef: b.Subject, Purpose: b.Purpose, WindowEnd: end,
				Spent: b.SpentEpsilon, Remaining: b.RemainingEpsilon, Total: b.TotalEpsilon, Fraction: b.RemainingFraction}
		}
		d.Summary, d.More = console.SummarizeBudgets(rq.cat, list), more
		if d.Policies, err = rq.api.policies(r.Context()); err != nil {
			return err
		}
	}
	if text, err := rq.api.metrics(r.Context(), rq.api.serving); err != nil {
		d.MetricsErr = shortErr(err)
	} else if sums, err := console.MetricSums(text, metric, "outcome"); err != nil {
		d.MetricsErr = err.Error()
	} else {
		for _, k := range slices.Sorted(maps.Keys(sums)) {
			d.Outcomes = append(d.Outcomes, outcomeCount{Outcome: k, Count: sums[k]})
		}
	}
	return a.render(w, r, rq, http.StatusOK, "budgets", rq.cat.T("budgets.title"), d)
}
