package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/training/hetero"
)

// ScoringModels adapts a Registry to the scoring service's model
// interface (serving.Models) without this package importing it.
type ScoringModels struct {
	r        *Registry
	notFound error
}

// ForScoring returns r as the scoring service reads models: GuestModel
// also returns the resolved version, and an unknown or malformed model
// id, version or label is returned wrapped in notFound (for instance
// serving.ErrModelNotFound) as well as in ErrNotFound or ErrInvalid.
func (r *Registry) ForScoring(notFound error) *ScoringModels {
	return &ScoringModels{r: r, notFound: notFound}
}

func (s *ScoringModels) wrap(err error) error {
	if s.notFound != nil && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid)) {
		return fmt.Errorf("%w: %w", s.notFound, err)
	}
	return err
}

// GuestModel resolves ref (a version, "stable", "canary" or "" for stable)
// and returns the guest half and its version.
func (s *ScoringModels) GuestModel(ctx context.Context, modelID, ref string) (*hetero.GuestModel, string, error) {
	m, e, err := s.r.GuestModel(ctx, modelID, ref)
	if err != nil {
		return nil, "", s.wrap(err)
	}
	return m, e.Version, nil
}

// HostModel returns this host's half of a version.
func (s *ScoringModels) HostModel(ctx context.Context, modelID, version string) (*hetero.HostModel, error) {
	m, _, err := s.r.HostModel(ctx, modelID, version)
	if err != nil {
		return nil, s.wrap(err)
	}
	return m, nil
}
