// Package sqlregistry is the SQL store of the model registry
// (registry.Store) on SQLite and PostgreSQL (migration 0011_models).
//
// Each model id has a row in models holding the highest version number
// handed out or registered. NextVersion is one upsert that increments it
// and returns the new value, so concurrent callers always get distinct
// numbers. Register and label changes run in one transaction that first
// writes that row, which serialises them per model on PostgreSQL (a row
// lock) and on SQLite (one writer at a time). A half is inserted with ON
// CONFLICT DO NOTHING, so a repeated registration never aborts the
// transaction; the stored digest then decides between no-op and conflict.
package sqlregistry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Store implements registry.Store on a node database.
type Store struct {
	db *sqldb.DB
	q  queries
}

type queries struct {
	next, bump, insert, digest, lock, hasVersion, label, setLabel, addHistory, history,
	entry, entryAny, entryHalf, entryHalfAny, versions, ids, labels string
}

var _ registry.Store = (*Store)(nil)

// New returns the store over db, which must be migrated.
func New(db *sqldb.DB) *Store {
	const cols = `model_id, version, role, digest, card, created_at, registered_by`
	r := db.Rebind
	return &Store{db: db, q: queries{
		next: r(`INSERT INTO models (model_id, last_version, created_at, updated_at) VALUES (?, 1, ?, ?)
ON CONFLICT (model_id) DO UPDATE SET last_version = models.last_version + 1, updated_at = excluded.updated_at
RETURNING last_version`),
		bump: r(`INSERT INTO models (model_id, last_version, created_at, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (model_id) DO UPDATE SET last_version = CASE WHEN models.last_version < excluded.last_version
THEN excluded.last_version ELSE models.last_version END, updated_at = excluded.updated_at`),
		insert: r(`INSERT INTO model_versions (model_id, version, version_num, role, half, digest, card, created_at, registered_by)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_id, version, role) DO NOTHING`),
		digest:     r(`SELECT digest FROM model_versions WHERE model_id = ? AND version = ? AND role = ?`),
		lock:       r(`UPDATE models SET updated_at = ? WHERE model_id = ?`),
		hasVersion: r(`SELECT COUNT(*) FROM model_versions WHERE model_id = ? AND version = ?`),
		label:      r(`SELECT version FROM model_labels WHERE model_id = ? AND label = ?`),
		setLabel: r(`INSERT INTO model_labels (model_id, label, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (model_id, label) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`),
		addHistory:   r(`INSERT INTO model_label_history (model_id, label, action, version, previous, actor, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		history:      r(`SELECT model_id, label, action, version, previous, actor, changed_at FROM model_label_history WHERE model_id = ? ORDER BY id`),
		entry:        r(`SELECT ` + cols + ` FROM model_versions WHERE model_id = ? AND version = ? AND role = ?`),
		entryAny:     r(`SELECT ` + cols + ` FROM model_versions WHERE model_id = ? AND version = ? ORDER BY role LIMIT 1`),
		entryHalf:    r(`SELECT ` + cols + `, half FROM model_versions WHERE model_id = ? AND version = ? AND role = ?`),
		entryHalfAny: r(`SELECT ` + cols + `, half FROM model_versions WHERE model_id = ? AND version = ? ORDER BY role LIMIT 1`),
		versions:     r(`SELECT ` + cols + ` FROM model_versions WHERE model_id = ? ORDER BY version_num, role`),
		ids:          r(`SELECT DISTINCT model_id FROM model_versions ORDER BY model_id`),
		labels:       r(`SELECT label, version FROM model_labels WHERE model_id = ?`),
	}}
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// NextVersion implements registry.Store.
func (s *Store) NextVersion(ctx context.Context, modelID string, at time.Time) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, s.q.next, modelID, micros(at), micros(at)).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}

// Insert implements registry.Store.
func (s *Store) Insert(ctx context.Context, e registry.Entry) error {
	num, err := registry.ParseVersion(e.Version)
	if err != nil {
		return err
	}
	at := micros(e.Created)
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.bump, e.ModelID, num, at, at); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q.insert, e.ModelID, e.Version, num, e.Role, e.Half, e.Digest, nullBytes(e.Card), at, e.RegisteredBy)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
		var have string
		if err := tx.QueryRowContext(ctx, s.q.digest, e.ModelID, e.Version, e.Role).Scan(&have); err != nil {
			return err
		}
		if have != e.Digest {
			return fmt.Errorf("%w: %s version %s (%s) is registered with another document (digest %.12s…)", registry.ErrConflict, e.ModelID, e.Version, e.Role, have)
		}
		return nil
	})
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

type scanner interface{ Scan(dest ...any) error }

func scanEntry(sc scanner, withHalf bool) (registry.Entry, error) {
	var (
		e       registry.Entry
		card    []byte
		created int64
	)
	dest := []any{&e.ModelID, &e.Version, &e.Role, &e.Digest, &card, &created, &e.RegisteredBy}
	if withHalf {
		dest = append(dest, &e.Half)
	}
	if err := sc.Scan(dest...); err != nil {
		return registry.Entry{}, err
	}
	if len(card) > 0 {
		e.Card = card
	}
	e.Created = time.UnixMicro(created).UTC()
	return e, nil
}

// Entry implements registry.Store.
func (s *Store) Entry(ctx context.Context, modelID, version, role string, withHalf bool) (registry.Entry, error) {
	q, args := s.q.entry, []any{modelID, version, role}
	switch {
	case withHalf && role == "":
		q, args = s.q.entryHalfAny, args[:2]
	case withHalf:
		q = s.q.entryHalf
	case role == "":
		q, args = s.q.entryAny, args[:2]
	}
	e, err := scanEntry(s.db.QueryRowContext(ctx, q, args...), withHalf)
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Entry{}, registry.ErrNotFound
	}
	return e, err
}

// Versions implements registry.Store.
func (s *Store) Versions(ctx context.Context, modelID string) ([]registry.Entry, error) {
	rows, err := s.db.QueryContext(ctx, s.q.versions, modelID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []registry.Entry
	for rows.Next() {
		e, err := scanEntry(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, registry.ErrNotFound
	}
	return out, nil
}

// ModelIDs implements registry.Store.
func (s *Store) ModelIDs(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q.ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Labels implements registry.Store.
func (s *Store) Labels(ctx context.Context, modelID string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q.labels, modelID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var l, v string
		if err := rows.Scan(&l, &v); err != nil {
			return nil, err
		}
		out[l] = v
	}
	return out, rows.Err()
}

// lockModel takes the model's row for the rest of tx; ErrNotFound when the
// model id is unknown.
func (s *Store) lockModel(ctx context.Context, tx *sql.Tx, modelID string, at time.Time) error {
	res, err := tx.ExecContext(ctx, s.q.lock, micros(at), modelID)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: no model %s", registry.ErrNotFound, modelID)
	}
	return nil
}

func (s *Store) current(ctx context.Context, tx *sql.Tx, modelID, label string) (string, error) {
	var v string
	err := tx.QueryRowContext(ctx, s.q.label, modelID, label).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (s *Store) move(ctx context.Context, tx *sql.Tx, c registry.LabelChange) error {
	at := micros(c.At)
	if _, err := tx.ExecContext(ctx, s.q.setLabel, c.ModelID, c.Label, c.Version, at, c.Actor); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q.addHistory, c.ModelID, c.Label, c.Action, c.Version, c.Previous, c.Actor, at)
	return err
}

// SetLabel implements registry.Store.
func (s *Store) SetLabel(ctx context.Context, c registry.LabelChange) (registry.LabelChange, error) {
	var out registry.LabelChange
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockModel(ctx, tx, c.ModelID, c.At); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.q.hasVersion, c.ModelID, c.Version).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: model %s has no version %s", registry.ErrNotFound, c.ModelID, c.Version)
		}
		prev, err := s.current(ctx, tx, c.ModelID, c.Label)
		if err != nil {
			return err
		}
		out = c
		out.Previous = prev
		if prev == c.Version {
			return nil
		}
		return s.move(ctx, tx, out)
	})
	if err != nil {
		return registry.LabelChange{}, err
	}
	return out, nil
}

// Rollback implements registry.Store.
func (s *Store) Rollback(ctx context.Context, c registry.LabelChange) (registry.LabelChange, error) {
	var out registry.LabelChange
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockModel(ctx, tx, c.ModelID, c.At); err != nil {
			return err
		}
		hist, err := s.readHistory(ctx, tx, c.ModelID)
		if err != nil {
			return err
		}
		var mine []registry.LabelChange
		for _, h := range hist {
			if h.Label == c.Label {
				mine = append(mine, h)
			}
		}
		target, ok := registry.RollbackTarget(mine)
		if !ok {
			return fmt.Errorf("%w: %s of %s has no earlier version", registry.ErrNoRollback, c.Label, c.ModelID)
		}
		prev, err := s.current(ctx, tx, c.ModelID, c.Label)
		if err != nil {
			return err
		}
		out = c
		out.Action, out.Version, out.Previous = registry.ActionRollback, target, prev
		return s.move(ctx, tx, out)
	})
	if err != nil {
		return registry.LabelChange{}, err
	}
	return out, nil
}

// History implements registry.Store.
func (s *Store) History(ctx context.Context, modelID string) ([]registry.LabelChange, error) {
	return s.readHistory(ctx, s.db, modelID)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) readHistory(ctx context.Context, q querier, modelID string) ([]registry.LabelChange, error) {
	rows, err := q.QueryContext(ctx, s.q.history, modelID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []registry.LabelChange
	for rows.Next() {
		var (
			c  registry.LabelChange
			at int64
		)
		if err := rows.Scan(&c.ModelID, &c.Label, &c.Action, &c.Version, &c.Previous, &c.Actor, &at); err != nil {
			return nil, err
		}
		c.At = time.UnixMicro(at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
