package lr

import (
	"context"

	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// CentralizedAUC trains the plaintext logistic regression on the guest's
// and one host's aligned tables joined in the clear — what pooling the data
// would give — with the federated trainer's split, standardisation and
// hyper-parameters, and returns its test AUC. It is the accuracy baseline
// of benchmarks and the demo, which hold both parties' data; it is never on
// the federated path.
func CentralizedAUC(ctx context.Context, guest, host *dataset.Table, cfg Config) (float64, error) {
	split := dataset.DefaultSplit()
	gp, _ := dataset.Standardise(split.Apply(guest))
	hp, _ := dataset.Standardise(split.Apply(host))
	join := func(pick func(dataset.Parts) *dataset.Table) Data {
		return Data{X: dataset.HStack(pick(gp).X, pick(hp).X), Y: pick(gp).Labels}
	}
	tr := join(func(p dataset.Parts) *dataset.Table { return p.Train })
	va := join(func(p dataset.Parts) *dataset.Table { return p.Validation })
	te := join(func(p dataset.Parts) *dataset.Table { return p.Test })
	m, _, err := Train(ctx, tr, va, cfg)
	if err != nil {
		return 0, err
	}
	return Evaluate(m.Logits(te.X), te.Y).AUC, nil
}
