package demo

import (
	"context"
	"sort"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

// centralized trains the baseline on the rows the federated job trained on
// — the bank's consented customers the partner also has — joined in the
// clear, with the job's hyper-parameters.
func (d *Demo) centralized(ctx context.Context, job trainjobapi.JobBody) (float64, error) {
	g, err := dataset.ReadFile(d.Guest.Input, true)
	if err != nil {
		return 0, err
	}
	h, err := dataset.ReadFile(d.Host.Input, false)
	if err != nil {
		return 0, err
	}
	ids := d.sharedConsented()
	ga, err := g.Align(ids)
	if err != nil {
		return 0, err
	}
	ha, err := h.Align(ids)
	if err != nil {
		return 0, err
	}
	cfg := lr.DefaultConfig()
	if job.Params != nil {
		cfg = *job.Params
	}
	return lr.CentralizedAUC(ctx, ga, ha, cfg)
}

// sharedConsented returns the bank's customers with an active consent whom
// the partner also has, sorted: what PSI over consented customers finds.
func (d *Demo) sharedConsented() []string {
	host := make(map[string]bool, len(d.Host.IDs))
	for _, id := range d.Host.IDs {
		host[id] = true
	}
	var ids []string
	for _, id := range d.Guest.IDs {
		if host[id] && fateOf(id, d.opts.Missing, d.opts.Withdrawn) == fateConsent {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
