// Package sqltrainjob implements trainjob.Store on the node's SQL database,
// SQLite or PostgreSQL (internal/sqldb, tables of migration 0012_training):
// training jobs with their per-epoch statistics, and each party's
// per-epoch checkpoints.
//
// UpdateJob runs in one transaction that locks the row first (SELECT ...
// FOR UPDATE on PostgreSQL; SQLite admits one writer at a time).
package sqltrainjob

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

// Store implements trainjob.Store.
type Store struct {
	db *sqldb.DB
}

var _ trainjob.Store = (*Store)(nil)

// New returns a Store on db (migrated to at least 0012_training).
func New(db *sqldb.DB) *Store { return &Store{db: db} }

const jobColumns = `id, role, algo, peer, peer_job, file, psi_job, host_file, model_id, model_version, params, epochs,
rows_count, features, status, error, epoch_stats, test_metrics, model_path, bytes_sent, bytes_received, created_by,
created_at, started_at, finished_at, updated_at`

// values returns the column values of j, in jobColumns order.
func values(j trainjob.Job) ([]any, error) {
	params := ""
	if j.Train != (lr.Config{}) {
		b, err := json.Marshal(j.Train)
		if err != nil {
			return nil, err
		}
		params = string(b)
	}
	stats := j.EpochStats
	if stats == nil {
		stats = []trainjob.EpochStat{}
	}
	sb, err := json.Marshal(stats)
	if err != nil {
		return nil, err
	}
	test := ""
	if j.Test != nil {
		b, err := json.Marshal(j.Test)
		if err != nil {
			return nil, err
		}
		test = string(b)
	}
	return []any{j.ID, j.Role, j.Algo, j.Peer, j.PeerJob, j.File, j.PSIJob, j.HostFile, j.ModelID, j.Version, params, j.Epochs,
		int64(j.Rows), j.Features, j.Status, j.Error, string(sb), test, j.ModelPath, j.BytesSent, j.BytesReceived, j.CreatedBy,
		sqldb.Micros(j.Created), sqldb.Micros(j.Started), sqldb.Micros(j.Finished), sqldb.Micros(j.Updated)}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(r scanner) (trainjob.Job, error) {
	var (
		j                          trainjob.Job
		params, stats, test        string
		rows                       int64
		created, started, finished int64
		updated                    int64
	)
	err := r.Scan(&j.ID, &j.Role, &j.Algo, &j.Peer, &j.PeerJob, &j.File, &j.PSIJob, &j.HostFile, &j.ModelID, &j.Version, &params, &j.Epochs,
		&rows, &j.Features, &j.Status, &j.Error, &stats, &test, &j.ModelPath, &j.BytesSent, &j.BytesReceived, &j.CreatedBy,
		&created, &started, &finished, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return trainjob.Job{}, trainjob.ErrNotFound
	}
	if err != nil {
		return trainjob.Job{}, err
	}
	j.Rows = int(rows)
	j.Created, j.Started, j.Finished, j.Updated = sqldb.FromMicros(created), sqldb.FromMicros(started), sqldb.FromMicros(finished), sqldb.FromMicros(updated)
	if params != "" {
		if err := json.Unmarshal([]byte(params), &j.Train); err != nil {
			return trainjob.Job{}, fmt.Errorf("training job %s: params: %w", j.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(stats), &j.EpochStats); err != nil {
		return trainjob.Job{}, fmt.Errorf("training job %s: epoch stats: %w", j.ID, err)
	}
	if len(j.EpochStats) == 0 {
		j.EpochStats = nil
	}
	if test != "" {
		var m lr.Metrics
		if err := json.Unmarshal([]byte(test), &m); err != nil {
			return trainjob.Job{}, fmt.Errorf("training job %s: test metrics: %w", j.ID, err)
		}
		j.Test = &m
	}
	return j, nil
}

// CreateJob implements trainjob.Store.
func (s *Store) CreateJob(ctx context.Context, j trainjob.Job) error {
	v, err := values(j)
	if err != nil {
		return err
	}
	q := "INSERT INTO training_jobs (" + jobColumns + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(v)), ", ") + ")"
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(q), v...); err != nil {
		if sqldb.IsUniqueViolation(err) {
			return trainjob.ErrExists
		}
		return fmt.Errorf("create training job: %w", err)
	}
	return nil
}

// GetJob implements trainjob.Store.
func (s *Store) GetJob(ctx context.Context, id string) (trainjob.Job, error) {
	return scanJob(s.db.QueryRowContext(ctx, s.db.Rebind("SELECT "+jobColumns+" FROM training_jobs WHERE id = ?"), id))
}

// ListJobs implements trainjob.Store.
func (s *Store) ListJobs(ctx context.Context, f trainjob.Filter) ([]trainjob.Job, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q := "SELECT " + jobColumns + " FROM training_jobs WHERE 1 = 1"
	var args []any
	if f.Role != "" {
		q += " AND role = ?"
		args = append(args, f.Role)
	}
	if len(f.Status) > 0 {
		q += " AND status IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(f.Status)), ", ") + ")"
		for _, st := range f.Status {
			args = append(args, st)
		}
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list training jobs: %w", err)
	}
	defer rows.Close()
	var out []trainjob.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// UpdateJob implements trainjob.Store.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*trainjob.Job) error) (trainjob.Job, error) {
	var out trainjob.Job
	lock := ""
	if s.db.Dialect == sqldb.Postgres {
		lock = " FOR UPDATE"
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		j, err := scanJob(tx.QueryRowContext(ctx, s.db.Rebind("SELECT "+jobColumns+" FROM training_jobs WHERE id = ?"+lock), id))
		if err != nil {
			return err
		}
		if err := fn(&j); err != nil {
			return err
		}
		j.ID = id
		v, err := values(j)
		if err != nil {
			return err
		}
		cols := strings.Split(jobColumns, ",")
		sets := make([]string, 0, len(cols)-1)
		for _, c := range cols[1:] {
			sets = append(sets, strings.TrimSpace(c)+" = ?")
		}
		args := append(v[1:], id)
		if _, err := tx.ExecContext(ctx, s.db.Rebind("UPDATE training_jobs SET "+strings.Join(sets, ", ")+" WHERE id = ?"), args...); err != nil {
			return err
		}
		out = j
		return nil
	})
	if err != nil {
		return trainjob.Job{}, err
	}
	return out, nil
}

// SaveCheckpoint implements trainjob.Store.
func (s *Store) SaveCheckpoint(ctx context.Context, c trainjob.Checkpoint) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.db.Rebind("SELECT COUNT(*) FROM training_jobs WHERE id = ?"), c.JobID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return trainjob.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind("DELETE FROM training_checkpoints WHERE job_id = ? AND epoch = ?"), c.JobID, c.Epoch); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.db.Rebind("INSERT INTO training_checkpoints (job_id, epoch, state, created_at) VALUES (?, ?, ?, ?)"),
			c.JobID, c.Epoch, c.State, sqldb.Micros(c.CreatedAt))
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("%w: %w", sqldb.ErrRetry, err)
		}
		return err
	})
}

// CheckpointEpochs implements trainjob.Store.
func (s *Store) CheckpointEpochs(ctx context.Context, jobID string) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind("SELECT epoch FROM training_checkpoints WHERE job_id = ? ORDER BY epoch"), jobID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var e int
		if err := rows.Scan(&e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// LoadCheckpoint implements trainjob.Store.
func (s *Store) LoadCheckpoint(ctx context.Context, jobID string, epoch int) (trainjob.Checkpoint, error) {
	c := trainjob.Checkpoint{JobID: jobID, Epoch: epoch}
	var created int64
	err := s.db.QueryRowContext(ctx, s.db.Rebind("SELECT state, created_at FROM training_checkpoints WHERE job_id = ? AND epoch = ?"), jobID, epoch).
		Scan(&c.State, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return trainjob.Checkpoint{}, trainjob.ErrNotFound
	}
	if err != nil {
		return trainjob.Checkpoint{}, err
	}
	c.CreatedAt = sqldb.FromMicros(created)
	return c, nil
}

// DeleteCheckpoints implements trainjob.Store.
func (s *Store) DeleteCheckpoints(ctx context.Context, jobID string) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind("DELETE FROM training_checkpoints WHERE job_id = ?"), jobID)
	return err
}
