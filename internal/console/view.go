package console

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// LowFraction is the remaining budget share below which a subject is
// listed (the runbook's PrivacyBudgetLow threshold).
const LowFraction = 0.2

// MaxLowListed bounds the subjects the budgets page lists.
const MaxLowListed = 200

// Budget is one privacy budget (a host's, per subject, purpose and window).
type Budget struct {
	Party      string // the guest party the releases went to
	SubjectRef string // a pseudonym
	Purpose    string
	WindowEnd  time.Time
	Spent      float64 // ε
	Remaining  float64
	Total      float64
	Fraction   float64 // remaining share, 0..1
}

// BudgetSummary is what the budgets page shows.
type BudgetSummary struct {
	Count       int
	Exhausted   int
	LowCount    int      // below LowFraction
	Low         []Budget // the lowest first, at most MaxLowListed
	SpentTotal  float64
	MinFraction float64
	Histogram   Histogram
	Buckets     []BudgetBucket // the histogram's numbers, for its table
}

// BudgetBucket is one bucket of the distribution.
type BudgetBucket struct {
	Label string
	Count int
	Low   bool
}

// SummarizeBudgets builds the distribution of remaining budget shares (ten
// buckets of 0.1, the two below 0.2 marked) and the low list.
func SummarizeBudgets(c *Catalog, bs []Budget) BudgetSummary {
	s := BudgetSummary{Count: len(bs), MinFraction: 1}
	counts := make([]int, 10)
	labels := make([]string, 10)
	classes := make([]string, 10)
	for i := range 10 {
		labels[i] = fmt.Sprintf("%.1f–%.1f", float64(i)/10, float64(i+1)/10)
		if float64(i+1)/10 <= LowFraction+1e-9 {
			classes[i] = "bar-low"
		}
	}
	for _, b := range bs {
		f := b.Fraction
		if !finite(f) {
			continue
		}
		f = math.Min(1, math.Max(0, f))
		counts[min(int(f*10), 9)]++
		s.SpentTotal += b.Spent
		s.MinFraction = math.Min(s.MinFraction, f)
		if b.Remaining <= 0 {
			s.Exhausted++
		}
		if f < LowFraction {
			s.LowCount++
			s.Low = append(s.Low, b)
		}
	}
	if len(bs) == 0 {
		s.MinFraction = 0
	}
	sort.SliceStable(s.Low, func(i, j int) bool { return s.Low[i].Fraction < s.Low[j].Fraction })
	if len(s.Low) > MaxLowListed {
		s.Low = s.Low[:MaxLowListed]
	}
	s.Histogram = NewHistogram(c.T("budgets.chart.title"), c.T("budgets.chart.x"), c.T("budgets.chart.y"), labels, counts, classes)
	for i := range 10 {
		s.Buckets = append(s.Buckets, BudgetBucket{Label: labels[i], Count: counts[i], Low: classes[i] != ""})
	}
	return s
}

// EpochStat is one epoch (or tree) of a training job.
type EpochStat struct {
	Epoch   int
	Seconds float64
	Loss    float64
	AUC     float64
	KS      float64
	Best    bool
}

// Curves are a training job's charts.
type Curves struct {
	Loss, Quality LineChart
	Unit          string // "epoch" or "tree", translated
}

// TrainingCurves draws the loss and the validation AUC and KS per epoch,
// or per tree for tree models (an algorithm named ...boost or ...tree).
func TrainingCurves(c *Catalog, algo string, stats []EpochStat) Curves {
	unit := c.T("training.unit.epoch")
	if a := strings.ToLower(algo); strings.Contains(a, "boost") || strings.Contains(a, "tree") {
		unit = c.T("training.unit.tree")
	}
	var loss, auc, ks []Point
	for _, s := range stats {
		x := float64(s.Epoch)
		loss = append(loss, Point{x, s.Loss})
		auc = append(auc, Point{x, s.AUC})
		ks = append(ks, Point{x, s.KS})
	}
	return Curves{
		Unit: unit,
		Loss: NewLineChart(c.T("training.chart.loss"), unit, c.T("training.loss"), []Series{{Name: c.T("training.loss"), Class: "s1", Points: loss}}),
		Quality: NewLineChart(c.T("training.chart.quality"), unit, c.T("training.metric"), []Series{
			{Name: "AUC", Class: "s2", Points: auc}, {Name: "KS", Class: "s3", Points: ks}}),
	}
}

// ImportanceChart draws feature weights, the largest first, at most n.
func ImportanceChart(c *Catalog, imp []Importance, n int) BarChart {
	items := make([]BarItem, 0, min(n, len(imp)))
	for i, f := range imp {
		if i >= n {
			break
		}
		cls := "bar-up"
		if f.Weight < 0 {
			cls = "bar-down"
		}
		items = append(items, BarItem{Label: f.Feature, Value: f.Weight, Class: cls, ValueText: fmt.Sprintf("%+.4f", f.Weight)})
	}
	return NewBarChart(c.T("models.importance"), items)
}

// Reason is a reason code of a score.
type Reason struct {
	Source       string
	Feature      string
	Contribution float64
	Direction    string
}

// ReasonChart draws a score's reason codes as signed bars.
func ReasonChart(c *Catalog, rs []Reason) BarChart {
	items := make([]BarItem, 0, len(rs))
	for _, r := range rs {
		label := r.Feature
		if label == "" {
			label = c.F("scoring.host_aggregate", r.Source)
		}
		cls := "bar-up"
		if r.Contribution < 0 {
			cls = "bar-down"
		}
		items = append(items, BarItem{Label: label, Value: r.Contribution, Class: cls, ValueText: fmt.Sprintf("%+.3f", r.Contribution)})
	}
	return NewBarChart(c.T("scoring.reasons"), items)
}
