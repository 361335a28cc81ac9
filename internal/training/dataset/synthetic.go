package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// SyntheticConfig describes a synthetic vertically split data set.
type SyntheticConfig struct {
	Rows          int
	GuestFeatures int
	HostFeatures  []int // one entry per host
	Seed          uint64
	// Intercept of the planted model; the default -1.3 gives about 22%
	// positives, like the credit data.
	Intercept float64
	// Signal scales the planted weights (default 1): the planted logit has
	// standard deviation about Signal.
	Signal float64
}

// Planted is the logistic model the synthetic labels were drawn from.
type Planted struct {
	GuestWeights []float64
	HostWeights  [][]float64
	Intercept    float64
}

// Synthetic generates a guest table (ids, labels, GuestFeatures columns)
// and one host table per entry of HostFeatures, with the same ids, from a
// planted logistic model: features are standard normal with a weak shared
// latent factor (correlation 0.02 between any two, so the parties'
// features correlate as real ones do without making wide data
// ill-conditioned),
// weights are drawn once, and y ~ Bernoulli(sigmoid(intercept + x·w)). The
// output is a deterministic function of the config. It is not secret data,
// so it uses a seeded math/rand generator.
func Synthetic(cfg SyntheticConfig) (guest *Table, hosts []*Table, truth Planted, err error) {
	if cfg.Rows <= 0 || cfg.GuestFeatures <= 0 || len(cfg.HostFeatures) == 0 {
		return nil, nil, Planted{}, fmt.Errorf("synthetic: need rows, guest features and at least one host")
	}
	total := cfg.GuestFeatures
	for _, h := range cfg.HostFeatures {
		if h <= 0 {
			return nil, nil, Planted{}, fmt.Errorf("synthetic: a host needs at least one feature")
		}
		total += h
	}
	if total > MaxFeatures*4 || cfg.Rows > MaxRows {
		return nil, nil, Planted{}, fmt.Errorf("synthetic: too large")
	}
	signal := cfg.Signal
	if signal == 0 {
		signal = 1
	}
	intercept := cfg.Intercept
	if intercept == 0 {
		intercept = -1.3
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed_f00d))
	// Planted weights: a few strong, many weak, split across the parties.
	w := make([]float64, total)
	var norm float64
	for j := range w {
		v := rng.NormFloat64()
		if rng.Float64() < 0.8 {
			v *= 0.2
		}
		w[j] = v
		norm += v * v
	}
	scale := signal / math.Sqrt(norm)
	for j := range w {
		w[j] *= scale
	}
	truth.Intercept = intercept
	truth.GuestWeights = w[:cfg.GuestFeatures]
	off := cfg.GuestFeatures
	for _, h := range cfg.HostFeatures {
		truth.HostWeights = append(truth.HostWeights, w[off:off+h])
		off += h
	}

	ids := make([]string, cfg.Rows)
	for i := range ids {
		ids[i] = "s" + strconv.Itoa(i+1)
	}
	names := func(prefix string, n int) []string {
		out := make([]string, n)
		for j := range out {
			out[j] = prefix + strconv.Itoa(j)
		}
		return out
	}
	guest = &Table{IDs: ids, Labels: make([]float64, cfg.Rows), Features: names("x", cfg.GuestFeatures), X: NewMatrix(cfg.Rows, cfg.GuestFeatures)}
	for _, h := range cfg.HostFeatures {
		hosts = append(hosts, &Table{IDs: ids, Features: names("x", h), X: NewMatrix(cfg.Rows, h)})
	}
	const shared = 0.02
	row := make([]float64, total)
	for i := 0; i < cfg.Rows; i++ {
		z := rng.NormFloat64()
		logit := intercept
		for j := range row {
			row[j] = math.Sqrt(1-shared)*rng.NormFloat64() + math.Sqrt(shared)*z
			logit += row[j] * w[j]
		}
		copy(guest.X.Row(i), row[:cfg.GuestFeatures])
		off := cfg.GuestFeatures
		for k, h := range cfg.HostFeatures {
			copy(hosts[k].X.Row(i), row[off:off+h])
			off += h
		}
		if rng.Float64() < 1/(1+math.Exp(-logit)) {
			guest.Labels[i] = 1
		}
	}
	return guest, hosts, truth, nil
}
