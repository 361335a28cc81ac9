package trainjob

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// PSIResults reads this node's PSI jobs and their results
// (*psijob.Service).
type PSIResults interface {
	Get(ctx context.Context, id string) (psijob.Job, error)
	List(ctx context.Context, f psijob.JobFilter) ([]psijob.Job, error)
	Export(ctx context.Context, id string, fn func(psijob.ResultRow) error) error
}

// psiRef is what the guest tells the host about the PSI run both align
// to: the host's PSI job id (when the guest's job recorded it) and the PSI
// session, which both parties' jobs record.
type psiRef struct {
	HostJob, Session string
}

// intersection checks that PSI job id of this node can align a training
// job of role with peer — a finished job of the same role, with that peer,
// in mode both, so that both parties hold the intersection — and returns
// it with the intersection's normalised identifiers, sorted.
func (m *Manager) intersection(ctx context.Context, id, role, peer string) (psijob.Job, []string, error) {
	if m.opts.PSI == nil {
		return psijob.Job{}, nil, fmt.Errorf("%w: this node cannot read PSI results (no database)", ErrInvalid)
	}
	j, err := m.opts.PSI.Get(ctx, id)
	if errors.Is(err, psijob.ErrNotFound) {
		return psijob.Job{}, nil, fmt.Errorf("%w: no PSI job %.40q on this node", ErrInvalid, id)
	}
	if err != nil {
		return psijob.Job{}, nil, err
	}
	if err := checkPSIJob(j, role, peer); err != nil {
		return psijob.Job{}, nil, err
	}
	var ids []string
	err = m.opts.PSI.Export(ctx, j.ID, func(r psijob.ResultRow) error {
		ids = append(ids, r.ID)
		return nil
	})
	if err != nil {
		return psijob.Job{}, nil, fmt.Errorf("read the result of PSI job %s: %w", j.ID, err)
	}
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		return psijob.Job{}, nil, fmt.Errorf("%w: the result of PSI job %s repeats identifiers", ErrInvalid, j.ID)
	}
	if len(ids) == 0 {
		return psijob.Job{}, nil, fmt.Errorf("%w: PSI job %s found no common identifiers", ErrInvalid, j.ID)
	}
	return j, ids, nil
}

func checkPSIJob(j psijob.Job, role, peer string) error {
	switch {
	case string(j.Role) != role:
		return fmt.Errorf("%w: PSI job %s is a %s job; a %s training job aligns to this node's %s PSI job", ErrInvalid, j.ID, j.Role, role, role)
	case j.Peer.Party != peer:
		return fmt.Errorf("%w: PSI job %s ran with %s, not with %s", ErrInvalid, j.ID, j.Peer.Party, peer)
	case j.Mode != psijob.ModeBoth:
		return fmt.Errorf("%w: PSI job %s ran in mode %s; training needs a PSI job in mode both, in which the host learns the intersection too (fedrisk psi run --mode both)", ErrInvalid, j.ID, j.Mode)
	case j.Status != psijob.StatusDone:
		return fmt.Errorf("%w: PSI job %s is %s, not done", ErrInvalid, j.ID, j.Status)
	}
	return nil
}

// align returns the rows of t whose identifier, normalised as the PSI job
// normalised it, is in ids (sorted), in the order of ids and with the
// normalised identifiers as row ids: both parties get the same rows in the
// same order, and the same train/validation/test split.
func align(t *dataset.Table, norm psi.Normalization, ids []string) (*dataset.Table, error) {
	want := make(map[string]int, len(ids))
	for k, id := range ids {
		want[id] = k
	}
	idx := make([]int, len(ids))
	for k := range idx {
		idx[k] = -1
	}
	dups := 0
	for i, raw := range t.IDs {
		n, err := norm.Apply(raw)
		if err != nil {
			continue // never matched
		}
		k, ok := want[n]
		if !ok {
			continue
		}
		if idx[k] >= 0 {
			dups++
			continue
		}
		idx[k] = i
	}
	missing := 0
	for _, i := range idx {
		if i < 0 {
			missing++
		}
	}
	switch {
	case dups > 0:
		return nil, fmt.Errorf("%w: the file holds %d identifiers of the PSI intersection more than once", ErrInvalid, dups)
	case missing > 0:
		return nil, fmt.Errorf("%w: the file lacks %d of the %d identifiers of the PSI intersection (give the file with this party's rows of the PSI input)", ErrInvalid, missing, len(ids))
	}
	out := t.Rows(idx)
	out.IDs = slices.Clone(ids)
	return out, nil
}

// hostPSIJob finds the host's PSI job the guest party names: by its id, or
// by the PSI session both parties' jobs recorded.
func (m *Manager) hostPSIJob(ctx context.Context, party string, req OpenRequest) (psijob.Job, error) {
	if m.opts.PSI == nil {
		return psijob.Job{}, errors.New("this host cannot read PSI results (no database)")
	}
	var j psijob.Job
	if req.PSIJob != "" {
		var err error
		j, err = m.opts.PSI.Get(ctx, req.PSIJob)
		if errors.Is(err, psijob.ErrNotFound) {
			return psijob.Job{}, fmt.Errorf("no PSI job %s on this host", req.PSIJob)
		}
		if err != nil {
			return psijob.Job{}, &hostDataError{public: "the host cannot read its PSI jobs right now", err: err}
		}
		if req.PSISession != "" && j.Session != req.PSISession {
			return psijob.Job{}, fmt.Errorf("PSI job %s ran another session than the guest's", req.PSIJob)
		}
	} else {
		jobs, err := m.opts.PSI.List(ctx, psijob.JobFilter{Role: psijob.RoleHost, Status: []psijob.Status{psijob.StatusDone}, Limit: 1000})
		if err != nil {
			return psijob.Job{}, err
		}
		found := false
		for _, c := range jobs {
			if c.Session == req.PSISession && c.Peer.Party == party {
				j, found = c, true
				break
			}
		}
		if !found {
			return psijob.Job{}, errors.New("this host has no finished PSI job of the guest's PSI session")
		}
	}
	if err := checkPSIJob(j, RoleHost, party); err != nil {
		return psijob.Job{}, err
	}
	return j, nil
}

// psiInputFile returns the host PSI job's CSV input relative to the input
// directory, when it lies below it.
func (m *Manager) psiInputFile(j psijob.Job) (string, bool) {
	if j.Input.Kind != psijob.InputCSV || m.opts.InputDir == "" {
		return "", false
	}
	abs, err := filepath.Abs(m.opts.InputDir)
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(abs, j.Input.Path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return rel, true
}
