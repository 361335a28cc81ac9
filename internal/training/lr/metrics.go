package lr

import (
	"encoding/json"
	"math"
	"sort"
)

// AUC returns the area under the ROC curve of scores against binary labels
// y, exactly: the Mann–Whitney statistic with average ranks for ties (a tie
// between a positive and a negative counts one half). It returns NaN when y
// has a single class.
func AUC(scores, y []float64) float64 {
	n := len(scores)
	idx := sortedIdx(scores)
	var np, rankSum float64
	for i := 0; i < n; {
		j := i
		for j < n && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] == 1 {
				rankSum += avg
				np++
			}
		}
		i = j
	}
	nn := float64(n) - np
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	return (rankSum - np*(np+1)/2) / (np * nn)
}

// KS returns the Kolmogorov–Smirnov statistic: the largest gap between the
// cumulative score distributions of positives and negatives, evaluated only
// between distinct scores (tied rows move together). NaN for a single class.
func KS(scores, y []float64) float64 {
	n := len(scores)
	idx := sortedIdx(scores)
	var np float64
	for _, v := range y {
		np += v
	}
	nn := float64(n) - np
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	var cp, cn, ks float64
	for i := 0; i < n; {
		j := i
		for j < n && scores[idx[j]] == scores[idx[i]] {
			if y[idx[j]] == 1 {
				cp++
			} else {
				cn++
			}
			j++
		}
		ks = math.Max(ks, math.Abs(cp/np-cn/nn))
		i = j
	}
	return ks
}

// LogLoss returns the mean negative log-likelihood of probabilities p
// (clipped to [1e-15, 1-1e-15]) against labels y.
func LogLoss(p, y []float64) float64 {
	const eps = 1e-15
	var s float64
	for i, v := range p {
		v = math.Min(math.Max(v, eps), 1-eps)
		if y[i] == 1 {
			s -= math.Log(v)
		} else {
			s -= math.Log(1 - v)
		}
	}
	return s / float64(len(p))
}

// LogLossLogits is LogLoss of Logistic(u), computed stably from logits.
func LogLossLogits(u, y []float64) float64 {
	var s float64
	for i, v := range u {
		// −log σ(v) = log(1+e^−v); −log(1−σ(v)) = log(1+e^v)
		if y[i] == 1 {
			s += softplus(-v)
		} else {
			s += softplus(v)
		}
	}
	return s / float64(len(u))
}

func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// Metrics are the evaluation numbers of a set of scores.
type Metrics struct {
	Rows    int     `json:"rows"`
	AUC     float64 `json:"auc"`
	KS      float64 `json:"ks"`
	LogLoss float64 `json:"log_loss"`
}

// MarshalJSON writes undefined metrics (NaN, e.g. AUC of a single class)
// as null.
func (m Metrics) MarshalJSON() ([]byte, error) {
	f := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		Rows    int      `json:"rows"`
		AUC     *float64 `json:"auc"`
		KS      *float64 `json:"ks"`
		LogLoss *float64 `json:"log_loss"`
	}{m.Rows, f(m.AUC), f(m.KS), f(m.LogLoss)})
}

// Evaluate computes the metrics of logits u against y.
func Evaluate(u, y []float64) Metrics {
	return Metrics{Rows: len(u), AUC: AUC(u, y), KS: KS(u, y), LogLoss: LogLossLogits(u, y)}
}

func sortedIdx(s []float64) []int {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return s[idx[a]] < s[idx[b]] })
	return idx
}
