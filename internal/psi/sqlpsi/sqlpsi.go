// Package sqlpsi implements psijob.Store and psijob.TableReader on the
// node's SQL database, SQLite or PostgreSQL.
//
// Its tables come from migrations 0006_psi and 0010_psi_both: a both-learn
// job is stored as mode 'intersection' with reveal_to_host = 1, because
// 0006's CHECK on the mode cannot be changed portably. The TableReader reads
// one column of a table of that database as a job's input.
//
// Read-modify-write updates (UpdateJob, UpdateSession, ClaimJob) run in one
// transaction that locks the row first (SELECT ... FOR UPDATE on
// PostgreSQL; SQLite's immediate transactions admit one writer at a time),
// so concurrent runners and replicas never lose each other's changes.
package sqlpsi

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Store implements psijob.Store.
type Store struct {
	db *sqldb.DB
}

var _ psijob.Store = (*Store)(nil)

// New returns a Store on db (migrated to at least 0010_psi_both).
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// nullBytes stores nil as NULL (drivers differ on what a nil []byte is).
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func (s *Store) forUpdate() string {
	if s.db.Dialect == sqldb.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.db.InTx(ctx, fn)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ---- jobs ----

const jobColumns = `id, role, peer, peer_url, peer_job, status, mode, purpose, input, normalization, batch_size,
	session_id, tag_len, input_digest, key_id, key_enc, rows_read, local_count, peer_count, duplicates, invalid, excluded,
	done_items, total_items, rate, intersection_size, error, owner, lease_until, created_by, created_at, started_at, updated_at, finished_at,
	reveal_to_host`

type inputJSON struct {
	Kind   string `json:"kind"`
	Path   string `json:"path,omitempty"`
	Table  string `json:"table,omitempty"`
	Column string `json:"column"`
}

type normJSON struct {
	Trim     bool   `json:"trim"`
	CaseFold bool   `json:"case_fold"`
	Phone    string `json:"phone,omitempty"`
}

func jobArgs(j psijob.Job) ([]any, error) {
	in, err := json.Marshal(inputJSON{Kind: j.Input.Kind, Path: j.Input.Path, Table: j.Input.Table, Column: j.Input.Column})
	if err != nil {
		return nil, err
	}
	norm, err := json.Marshal(normJSON{Trim: j.Normalization.Trim, CaseFold: j.Normalization.CaseFold, Phone: j.Normalization.Phone})
	if err != nil {
		return nil, err
	}
	var size any
	if j.IntersectionSize != nil {
		size = *j.IntersectionSize
	}
	mode, reveal := string(j.Mode), 0
	if j.Mode == psijob.ModeBoth {
		mode, reveal = string(psijob.ModeIntersection), 1
	}
	return []any{j.ID, string(j.Role), j.Peer.Party, j.Peer.URL, j.PeerJob, string(j.Status), mode, j.Purpose,
		string(in), string(norm), j.BatchSize, j.Session, j.TagLen, nullBytes(j.InputDigest), j.KeyID, nullBytes(j.KeyEnc),
		j.RowsRead, j.LocalCount, j.PeerCount, j.Duplicates, j.Invalid, j.Excluded, j.DoneItems, j.TotalItems, j.Rate, size,
		j.Error, j.Owner, sqldb.Micros(j.LeaseUntil), j.CreatedBy, sqldb.Micros(j.CreatedAt), sqldb.Micros(j.StartedAt), sqldb.Micros(j.UpdatedAt), sqldb.Micros(j.FinishedAt),
		reveal}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(r scanner) (psijob.Job, error) {
	var (
		j                                       psijob.Job
		role, status, mode, in, norm            string
		size                                    sql.NullInt64
		lease, created, started, updated, finis int64
		reveal                                  int
	)
	err := r.Scan(&j.ID, &role, &j.Peer.Party, &j.Peer.URL, &j.PeerJob, &status, &mode, &j.Purpose, &in, &norm, &j.BatchSize,
		&j.Session, &j.TagLen, &j.InputDigest, &j.KeyID, &j.KeyEnc, &j.RowsRead, &j.LocalCount, &j.PeerCount, &j.Duplicates,
		&j.Invalid, &j.Excluded, &j.DoneItems, &j.TotalItems, &j.Rate, &size, &j.Error, &j.Owner, &lease, &j.CreatedBy,
		&created, &started, &updated, &finis, &reveal)
	if err != nil {
		return j, err
	}
	j.Role, j.Status, j.Mode = psijob.Role(role), psijob.Status(status), psijob.Mode(mode)
	if reveal == 1 {
		if j.Mode != psijob.ModeIntersection {
			return j, fmt.Errorf("psi job %s: reveal_to_host with mode %s", j.ID, mode)
		}
		j.Mode = psijob.ModeBoth
	}
	var ij inputJSON
	if err := json.Unmarshal([]byte(in), &ij); err != nil {
		return j, fmt.Errorf("psi job %s: input: %w", j.ID, err)
	}
	j.Input = psijob.Input{Kind: ij.Kind, Path: ij.Path, Table: ij.Table, Column: ij.Column}
	var nj normJSON
	if err := json.Unmarshal([]byte(norm), &nj); err != nil {
		return j, fmt.Errorf("psi job %s: normalization: %w", j.ID, err)
	}
	j.Normalization = psi.Normalization{Trim: nj.Trim, CaseFold: nj.CaseFold, Phone: nj.Phone}
	if size.Valid {
		v := size.Int64
		j.IntersectionSize = &v
	}
	j.LeaseUntil, j.CreatedAt, j.StartedAt, j.UpdatedAt, j.FinishedAt = sqldb.FromMicros(lease), sqldb.FromMicros(created), sqldb.FromMicros(started), sqldb.FromMicros(updated), sqldb.FromMicros(finis)
	return j, nil
}

// CreateJob implements psijob.Store.
func (s *Store) CreateJob(ctx context.Context, j psijob.Job) error {
	args, err := jobArgs(j)
	if err != nil {
		return err
	}
	if err := s.insert(ctx, "psi_jobs", jobColumns, args); err != nil {
		return fmt.Errorf("create psi job: %w", err)
	}
	return nil
}

func (s *Store) getJob(ctx context.Context, q queryer, id string, lock bool) (psijob.Job, error) {
	return getByID(ctx, s, q, "psi_jobs", jobColumns, id, lock, scanJob, psijob.ErrNotFound)
}

// getByID reads the row of table with id (FOR UPDATE when lock), or
// notFound.
func getByID[T any](ctx context.Context, s *Store, q queryer, table, columns, id string, lock bool, scan func(scanner) (T, error), notFound error) (T, error) {
	query := `SELECT ` + columns + ` FROM ` + table + ` WHERE id = ?`
	if lock {
		query += s.forUpdate()
	}
	v, err := scan(q.QueryRowContext(ctx, s.db.Rebind(query), id))
	if errors.Is(err, sql.ErrNoRows) {
		return v, notFound
	}
	return v, err
}

// GetJob implements psijob.Store.
func (s *Store) GetJob(ctx context.Context, id string) (psijob.Job, error) {
	return s.getJob(ctx, s.db, id, false)
}

// ListJobs implements psijob.Store.
func (s *Store) ListJobs(ctx context.Context, f psijob.JobFilter) ([]psijob.Job, error) {
	var where []string
	var args []any
	if f.Role != "" {
		where = append(where, "role = ?")
		args = append(args, string(f.Role))
	}
	if len(f.Status) > 0 {
		ph := make([]string, len(f.Status))
		for i, st := range f.Status {
			ph[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "status IN ("+strings.Join(ph, ", ")+")")
	}
	q := `SELECT ` + jobColumns + ` FROM psi_jobs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list psi jobs: %w", err)
	}
	defer rows.Close()
	out := []psijob.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

func (s *Store) writeJob(ctx context.Context, tx *sql.Tx, j psijob.Job) error {
	args, err := jobArgs(j)
	if err != nil {
		return err
	}
	cols := strings.Split(jobColumns, ",")
	set := make([]string, 0, len(cols)-1)
	for _, c := range cols[1:] {
		set = append(set, strings.TrimSpace(c)+" = ?")
	}
	_, err = tx.ExecContext(ctx, s.db.Rebind(`UPDATE psi_jobs SET `+strings.Join(set, ", ")+` WHERE id = ?`), append(args[1:], j.ID)...)
	return err
}

// UpdateJob implements psijob.Store.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*psijob.Job) error) (psijob.Job, error) {
	var out psijob.Job
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		j, err := s.getJob(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := fn(&j); err != nil {
			return err
		}
		j.ID = id
		if err := s.writeJob(ctx, tx, j); err != nil {
			return fmt.Errorf("update psi job: %w", err)
		}
		out = j
		return nil
	})
	return out, err
}

// ClaimJob implements psijob.Store.
func (s *Store) ClaimJob(ctx context.Context, id, owner string, now, until time.Time) (psijob.Job, error) {
	return s.UpdateJob(ctx, id, func(j *psijob.Job) error {
		switch {
		case j.Status == psijob.StatusPending:
		case j.Status == psijob.StatusRunning && (j.Owner == owner || !now.Before(j.LeaseUntil)):
		default:
			return fmt.Errorf("%w: it is %s", psijob.ErrNotClaimable, j.Status)
		}
		if j.StartedAt.IsZero() {
			j.StartedAt = now
		}
		j.Status, j.Owner, j.LeaseUntil, j.UpdatedAt = psijob.StatusRunning, owner, until, now
		return nil
	})
}

// ---- checkpoints and results ----

// SaveCheckpoint implements psijob.Store.
func (s *Store) SaveCheckpoint(ctx context.Context, c psijob.Checkpoint) error {
	q := `INSERT INTO psi_checkpoints (job_id, phase, batch, session_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, phase, batch) DO UPDATE SET session_id = excluded.session_id, data = excluded.data, created_at = excluded.created_at`
	data := c.Data
	if data == nil {
		data = []byte{}
	}
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(q), c.JobID, c.Phase, c.Batch, c.Session, data, sqldb.Micros(c.CreatedAt)); err != nil {
		return fmt.Errorf("save psi checkpoint: %w", err)
	}
	return nil
}

// Checkpoints implements psijob.Store.
func (s *Store) Checkpoints(ctx context.Context, jobID string, phase int) ([]psijob.Checkpoint, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT batch, session_id, data, created_at FROM psi_checkpoints WHERE job_id = ? AND phase = ? ORDER BY batch`), jobID, phase)
	if err != nil {
		return nil, fmt.Errorf("psi checkpoints: %w", err)
	}
	defer rows.Close()
	var out []psijob.Checkpoint
	for rows.Next() {
		c := psijob.Checkpoint{JobID: jobID, Phase: phase}
		var at int64
		if err := rows.Scan(&c.Batch, &c.Session, &c.Data, &at); err != nil {
			return nil, err
		}
		if c.Data == nil {
			c.Data = []byte{}
		}
		c.CreatedAt = sqldb.FromMicros(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteCheckpoints implements psijob.Store.
func (s *Store) DeleteCheckpoints(ctx context.Context, jobID string) error {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM psi_checkpoints WHERE job_id = ?`), jobID); err != nil {
		return fmt.Errorf("delete psi checkpoints: %w", err)
	}
	return nil
}

// SaveResult implements psijob.Store.
func (s *Store) SaveResult(ctx context.Context, jobID string, chunks []psijob.ResultChunk) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM psi_results WHERE job_id = ?`), jobID); err != nil {
			return fmt.Errorf("save psi result: %w", err)
		}
		for _, c := range chunks {
			rows := c.Rows
			if rows == nil {
				rows = []byte{}
			}
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO psi_results (job_id, chunk, rows, ids_enc) VALUES (?, ?, ?, ?)`),
				jobID, c.Chunk, rows, nullBytes(c.IDsEnc)); err != nil {
				return fmt.Errorf("save psi result: %w", err)
			}
		}
		return nil
	})
}

// ResultChunks implements psijob.Store. Chunks are read one at a time, so
// a large result is never held whole.
func (s *Store) ResultChunks(ctx context.Context, jobID string, fn func(psijob.ResultChunk) error) error {
	for chunk := 0; ; chunk++ {
		c := psijob.ResultChunk{JobID: jobID, Chunk: chunk}
		err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT rows, ids_enc FROM psi_results WHERE job_id = ? AND chunk = ?`), jobID, chunk).Scan(&c.Rows, &c.IDsEnc)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("psi result: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

// ---- sessions ----

const sessionColumns = `id, job_id, peer, status, mode, guest_count, host_count, batch_size, tag_len, fingerprint,
	input_digest, key_id, key_enc, perm_enc, reason, code, created_at, last_seen, finished_at`

func sessionArgs(x psijob.Session) []any {
	return []any{x.ID, x.JobID, x.Peer, string(x.Status), string(x.Mode), x.GuestCount, x.HostCount, x.BatchSize, x.TagLen,
		x.Fingerprint, nullBytes(x.InputDigest), x.KeyID, nullBytes(x.KeyEnc), nullBytes(x.PermEnc), x.Reason, x.Code,
		sqldb.Micros(x.CreatedAt), sqldb.Micros(x.LastSeen), sqldb.Micros(x.FinishedAt)}
}

func scanSession(r scanner) (psijob.Session, error) {
	var (
		x                      psijob.Session
		status, mode           string
		created, seen, finishd int64
	)
	err := r.Scan(&x.ID, &x.JobID, &x.Peer, &status, &mode, &x.GuestCount, &x.HostCount, &x.BatchSize, &x.TagLen,
		&x.Fingerprint, &x.InputDigest, &x.KeyID, &x.KeyEnc, &x.PermEnc, &x.Reason, &x.Code, &created, &seen, &finishd)
	x.Status, x.Mode = psijob.SessionStatus(status), psijob.Mode(mode)
	x.CreatedAt, x.LastSeen, x.FinishedAt = sqldb.FromMicros(created), sqldb.FromMicros(seen), sqldb.FromMicros(finishd)
	return x, err
}

// CreateSession implements psijob.Store.
func (s *Store) CreateSession(ctx context.Context, x psijob.Session) error {
	args := sessionArgs(x)
	if err := s.insert(ctx, "psi_sessions", sessionColumns, args); err != nil {
		return fmt.Errorf("create psi session: %w", err)
	}
	return nil
}

func (s *Store) getSession(ctx context.Context, q queryer, id string, lock bool) (psijob.Session, error) {
	return getByID(ctx, s, q, "psi_sessions", sessionColumns, id, lock, scanSession, psijob.ErrSessionNotFound)
}

// GetSession implements psijob.Store.
func (s *Store) GetSession(ctx context.Context, id string) (psijob.Session, error) {
	return s.getSession(ctx, s.db, id, false)
}

// UpdateSession implements psijob.Store.
func (s *Store) UpdateSession(ctx context.Context, id string, fn func(*psijob.Session) error) (psijob.Session, error) {
	var out psijob.Session
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		x, err := s.getSession(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := fn(&x); err != nil {
			return err
		}
		x.ID = id
		args := sessionArgs(x)
		cols := strings.Split(sessionColumns, ",")
		set := make([]string, 0, len(cols)-1)
		for _, c := range cols[1:] {
			set = append(set, strings.TrimSpace(c)+" = ?")
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE psi_sessions SET `+strings.Join(set, ", ")+` WHERE id = ?`), append(args[1:], id)...); err != nil {
			return fmt.Errorf("update psi session: %w", err)
		}
		out = x
		return nil
	})
	return out, err
}

// IdleSessions implements psijob.Store.
func (s *Store) IdleSessions(ctx context.Context, idleBefore time.Time) ([]psijob.Session, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT `+sessionColumns+` FROM psi_sessions WHERE status = 'open' AND last_seen < ? ORDER BY last_seen LIMIT 1000`), sqldb.Micros(idleBefore))
	if err != nil {
		return nil, fmt.Errorf("idle psi sessions: %w", err)
	}
	defer rows.Close()
	var out []psijob.Session
	for rows.Next() {
		x, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// RecordBatch implements psijob.Store.
func (s *Store) RecordBatch(ctx context.Context, b psijob.SessionBatch) (psijob.SessionBatch, bool, error) {
	var stored psijob.SessionBatch
	var existed bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stored, existed = b, false
		var digest, tags []byte
		var receipts int
		err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT digest, receipts, tags FROM psi_session_batches WHERE session_id = ? AND batch = ?`+s.forUpdate()),
			b.Session, b.Batch).Scan(&digest, &receipts, &tags)
		switch {
		case err == nil:
			existed = true
			stored = psijob.SessionBatch{Session: b.Session, Batch: b.Batch, Digest: digest, Receipts: receipts + 1, Tags: tags}
			_, err = tx.ExecContext(ctx, s.db.Rebind(`UPDATE psi_session_batches SET receipts = receipts + 1 WHERE session_id = ? AND batch = ?`), b.Session, b.Batch)
			return err
		case errors.Is(err, sql.ErrNoRows):
			stored.Receipts = 1
			_, err = tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO psi_session_batches (session_id, batch, digest, receipts, tags, created_at) VALUES (?, ?, ?, 1, ?, ?)`),
				b.Session, b.Batch, b.Digest, nullBytes(b.Tags), time.Now().UnixMicro())
			if sqldb.IsUniqueViolation(err) {
				return fmt.Errorf("record batch: %w", sqldb.ErrRetry) // a concurrent duplicate won: read it
			}
			return err
		default:
			return err
		}
	})
	if err != nil {
		return stored, false, fmt.Errorf("record psi batch: %w", err)
	}
	return stored, existed, nil
}

// SessionBatches implements psijob.Store.
func (s *Store) SessionBatches(ctx context.Context, sessionID string) ([]psijob.SessionBatch, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT batch, digest, receipts, tags FROM psi_session_batches WHERE session_id = ? ORDER BY batch`), sessionID)
	if err != nil {
		return nil, fmt.Errorf("psi session batches: %w", err)
	}
	defer rows.Close()
	var out []psijob.SessionBatch
	for rows.Next() {
		b := psijob.SessionBatch{Session: sessionID}
		if err := rows.Scan(&b.Batch, &b.Digest, &b.Receipts, &b.Tags); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// RecordReveal implements psijob.Store.
func (s *Store) RecordReveal(ctx context.Context, r psijob.SessionReveal) (psijob.SessionReveal, bool, error) {
	var stored psijob.SessionReveal
	var existed bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stored, existed = r, false
		var raw []byte
		var receipts int
		err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT positions, receipts FROM psi_session_reveals WHERE session_id = ? AND batch = ?`+s.forUpdate()),
			r.Session, r.Batch).Scan(&raw, &receipts)
		switch {
		case err == nil:
			pos, err := decodePositions(raw)
			if err != nil {
				return fmt.Errorf("reveal batch %d: %w", r.Batch, err)
			}
			existed = true
			stored = psijob.SessionReveal{Session: r.Session, Batch: r.Batch, Positions: pos, Receipts: receipts + 1}
			_, err = tx.ExecContext(ctx, s.db.Rebind(`UPDATE psi_session_reveals SET receipts = receipts + 1 WHERE session_id = ? AND batch = ?`), r.Session, r.Batch)
			return err
		case errors.Is(err, sql.ErrNoRows):
			raw, err := encodePositions(r.Positions)
			if err != nil {
				return err
			}
			stored.Receipts = 1
			_, err = tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO psi_session_reveals (session_id, batch, positions, receipts, created_at) VALUES (?, ?, ?, 1, ?)`),
				r.Session, r.Batch, raw, time.Now().UnixMicro())
			if sqldb.IsUniqueViolation(err) {
				return fmt.Errorf("record reveal: %w", sqldb.ErrRetry) // a concurrent duplicate won: read it
			}
			return err
		default:
			return err
		}
	})
	if err != nil {
		return stored, false, fmt.Errorf("record psi reveal: %w", err)
	}
	return stored, existed, nil
}

// SessionReveals implements psijob.Store.
func (s *Store) SessionReveals(ctx context.Context, sessionID string) ([]psijob.SessionReveal, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT batch, positions, receipts FROM psi_session_reveals WHERE session_id = ? ORDER BY batch`), sessionID)
	if err != nil {
		return nil, fmt.Errorf("psi session reveals: %w", err)
	}
	defer rows.Close()
	var out []psijob.SessionReveal
	for rows.Next() {
		r := psijob.SessionReveal{Session: sessionID}
		var raw []byte
		if err := rows.Scan(&r.Batch, &raw, &r.Receipts); err != nil {
			return nil, err
		}
		if r.Positions, err = decodePositions(raw); err != nil {
			return nil, fmt.Errorf("psi session reveal %d: %w", r.Batch, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// encodePositions stores positions as 4-byte big-endian values.
func encodePositions(pos []int) ([]byte, error) {
	out := make([]byte, 0, 4*len(pos))
	for _, p := range pos {
		if p < 0 || p > math.MaxUint32 {
			return nil, fmt.Errorf("position %d out of range", p)
		}
		out = binary.BigEndian.AppendUint32(out, uint32(p))
	}
	return out, nil
}

func decodePositions(b []byte) ([]int, error) {
	if len(b)%4 != 0 {
		return nil, errors.New("corrupt positions")
	}
	out := make([]int, len(b)/4)
	for i := range out {
		out[i] = int(binary.BigEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// DeleteSessionBatches implements psijob.Store: guest batches and reveals.
func (s *Store) DeleteSessionBatches(ctx context.Context, sessionID string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, table := range []string{"psi_session_batches", "psi_session_reveals"} {
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM `+table+` WHERE session_id = ?`), sessionID); err != nil {
				return fmt.Errorf("delete psi session batches: %w", err)
			}
		}
		return nil
	})
}

// ---- table inputs ----

// Tables reads job inputs from tables of the node's database.
type Tables struct {
	db *sqldb.DB
}

var _ psijob.TableReader = Tables{}

// NewTables returns a TableReader on db.
func NewTables(db *sqldb.DB) Tables { return Tables{db: db} }

// quote quotes an identifier after checking it against psijob.ValidIdent;
// quoting keeps reserved words usable. SQLite gets brackets: it reads an
// unknown "double-quoted" name as a string literal.
func (t Tables) quote(ident string) (string, error) {
	if !psijob.ValidIdent(ident) {
		return "", fmt.Errorf("%q is not a valid identifier", ident)
	}
	if t.db.Dialect == sqldb.SQLite {
		return "[" + ident + "]", nil
	}
	return `"` + ident + `"`, nil
}

// CheckColumn implements psijob.TableReader.
func (t Tables) CheckColumn(ctx context.Context, table, column string) error {
	qt, err := t.quote(table)
	if err != nil {
		return err
	}
	qc, err := t.quote(column)
	if err != nil {
		return err
	}
	rows, err := t.db.QueryContext(ctx, `SELECT `+qc+` FROM `+qt+` WHERE 1 = 0`)
	if err != nil {
		return fmt.Errorf("no column %s in a table %s of the node's database", column, table)
	}
	return rows.Close()
}

// ReadColumn implements psijob.TableReader: non-NULL values, ordered by
// the column itself so every read sees the same order.
func (t Tables) ReadColumn(ctx context.Context, table, column string, fn func(string) error) error {
	qt, err := t.quote(table)
	if err != nil {
		return err
	}
	qc, err := t.quote(column)
	if err != nil {
		return err
	}
	rows, err := t.db.QueryContext(ctx, `SELECT CAST(`+qc+` AS TEXT) FROM `+qt+` WHERE `+qc+` IS NOT NULL ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("read %s.%s: %w", table, column, err)
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return rows.Err()
}

var createTable = regexp.MustCompile(`(?i)CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)`)

// Reserved reports whether table belongs to fedrisk's own schema (every
// table a migration creates, and schema_migrations): those are never
// inputs.
func Reserved() func(table string) bool {
	own := map[string]bool{"schema_migrations": true}
	for _, m := range sqldb.Migrations() {
		for _, match := range createTable.FindAllStringSubmatch(m.SQL, -1) {
			own[strings.ToLower(match[1])] = true
		}
	}
	return func(table string) bool { return own[strings.ToLower(table)] }
}

// insert writes one row of columns (a comma-separated list) into table.
func (s *Store) insert(ctx context.Context, table, columns string, args []any) error {
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO `+table+` (`+columns+`) VALUES (`+ph+`)`), args...)
	return err
}
