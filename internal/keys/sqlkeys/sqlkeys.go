// Package sqlkeys implements keys.Store over the node's SQL database
// (SQLite or PostgreSQL, tables from migration 0002_keys).
//
// Concurrency between nodes sharing one PostgreSQL database rests on the
// schema's unique indexes (one active KEK; one current and one next signing
// key) and on row locks: inserting a data key reads its KEK row FOR SHARE,
// so a rotation cannot turn that KEK into "retiring" until the insert has
// committed, and no data key can ever be added under a retiring or retired
// KEK. On SQLite every write transaction takes the database lock up front
// (sqldb opens it with _txlock=immediate), which gives the same guarantees.
package sqlkeys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Store is a keys.Store over SQL.
type Store struct {
	db *sqldb.DB
}

var _ keys.Store = (*Store)(nil)

// New returns a Store over a migrated database.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// exactlyOne turns an update that did not change exactly one row into
// keys.ErrConflict.
func exactlyOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return keys.ErrConflict
	}
	return nil
}

func conflictOnUnique(err error) error {
	if sqldb.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %v", keys.ErrConflict, err)
	}
	return err
}

// forShare locks the rows read on PostgreSQL; SQLite's write transaction
// already holds the database lock.
func (s *Store) forShare() string {
	if s.db.Dialect == sqldb.Postgres {
		return " FOR SHARE"
	}
	return ""
}

// KEKs implements keys.KEKStore.
func (s *Store) KEKs(ctx context.Context) ([]keys.KEKRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, state, wrapped, created_at, retired_at FROM keys_kek ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keys.KEKRecord
	for rows.Next() {
		var (
			r       keys.KEKRecord
			created int64
			retired sql.NullInt64
		)
		if err := rows.Scan(&r.Version, &r.State, &r.Wrapped, &created, &retired); err != nil {
			return nil, err
		}
		r.CreatedAt, r.RetiredAt = time.UnixMicro(created).UTC(), fromMicros(retired)
		out = append(out, r)
	}
	return out, rows.Err()
}

// AddKEK implements keys.KEKStore.
func (s *Store) AddKEK(ctx context.Context, k keys.KEKRecord) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var retiring int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys_kek WHERE state = 'retiring'`).Scan(&retiring); err != nil {
			return err
		}
		if retiring > 0 {
			return keys.ErrRotationInProgress
		}
		if k.Version > 1 {
			err := exactlyOne(tx.ExecContext(ctx, s.db.Rebind(`UPDATE keys_kek SET state = 'retiring' WHERE version = ? AND state = 'active'`), k.Version-1))
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO keys_kek (version, state, wrapped, created_at) VALUES (?, 'active', ?, ?)`),
			k.Version, k.Wrapped, k.CreatedAt.UnixMicro())
		return conflictOnUnique(err)
	})
}

// RetireKEK implements keys.KEKStore.
func (s *Store) RetireKEK(ctx context.Context, version int, at time.Time) error {
	return exactlyOne(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE keys_kek SET state = 'retired', wrapped = NULL, retired_at = ?
		WHERE version = ? AND state = 'retiring'
		AND NOT EXISTS (SELECT 1 FROM keys_dek WHERE kek_version = ? AND wrapped IS NOT NULL)`), at.UnixMicro(), version, version))
}

// DataKeyCounts implements keys.KEKStore.
func (s *Store) DataKeyCounts(ctx context.Context) (map[int]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kek_version, COUNT(*) FROM keys_dek WHERE wrapped IS NOT NULL GROUP BY kek_version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var v, n int
		if err := rows.Scan(&v, &n); err != nil {
			return nil, err
		}
		out[v] = n
	}
	return out, rows.Err()
}

// checkActive fails with keys.ErrConflict unless version is the active KEK,
// and keeps it active until tx ends.
func (s *Store) checkActive(ctx context.Context, tx *sql.Tx, version int) error {
	var state string
	err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT state FROM keys_kek WHERE version = ?`+s.forShare()), version).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) || err == nil && state != string(keys.KEKActive) {
		return keys.ErrConflict
	}
	return err
}

// InsertDataKey implements keys.DataKeyStore.
func (s *Store) InsertDataKey(ctx context.Context, d keys.DataKeyRecord) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkActive(ctx, tx, d.KEKVersion); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO keys_dek (id, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?)`),
			d.ID, d.KEKVersion, d.Wrapped, d.CreatedAt.UnixMicro())
		return conflictOnUnique(err)
	})
}

const dekColumns = `id, kek_version, wrapped, created_at, destroyed_at`

func scanDataKey(sc interface{ Scan(...any) error }) (keys.DataKeyRecord, error) {
	var (
		d         keys.DataKeyRecord
		created   int64
		destroyed sql.NullInt64
	)
	err := sc.Scan(&d.ID, &d.KEKVersion, &d.Wrapped, &created, &destroyed)
	d.CreatedAt, d.DestroyedAt = time.UnixMicro(created).UTC(), fromMicros(destroyed)
	return d, err
}

// DataKey implements keys.DataKeyStore.
func (s *Store) DataKey(ctx context.Context, id string) (keys.DataKeyRecord, error) {
	d, err := scanDataKey(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+dekColumns+` FROM keys_dek WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return keys.DataKeyRecord{}, keys.ErrUnknownKey
	}
	return d, err
}

// DestroyDataKey implements keys.DataKeyStore.
func (s *Store) DestroyDataKey(ctx context.Context, id string, at time.Time) error {
	err := exactlyOne(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE keys_dek SET wrapped = NULL, destroyed_at = COALESCE(destroyed_at, ?) WHERE id = ?`), at.UnixMicro(), id))
	if errors.Is(err, keys.ErrConflict) {
		return keys.ErrUnknownKey
	}
	return err
}

// StaleDataKeys implements keys.DataKeyStore.
func (s *Store) StaleDataKeys(ctx context.Context, below, limit int) ([]keys.DataKeyRecord, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT `+dekColumns+` FROM keys_dek WHERE kek_version < ? AND wrapped IS NOT NULL LIMIT ?`), below, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keys.DataKeyRecord
	for rows.Next() {
		d, err := scanDataKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// RewrapDataKeys implements keys.DataKeyStore.
func (s *Store) RewrapDataKeys(ctx context.Context, rs []keys.Rewrap) (int, error) {
	changed := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		changed = 0
		checked := map[int]bool{}
		stmt, err := tx.PrepareContext(ctx, s.db.Rebind(`UPDATE keys_dek SET wrapped = ?, kek_version = ? WHERE id = ? AND kek_version = ? AND wrapped IS NOT NULL`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range rs {
			if !checked[r.To] {
				if err := s.checkActive(ctx, tx, r.To); err != nil {
					return err
				}
				checked[r.To] = true
			}
			res, err := stmt.ExecContext(ctx, r.Wrapped, r.To, r.ID, r.From)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			changed += int(n)
		}
		return nil
	})
	return changed, err
}

const signingColumns = `kid, state, public_key, private_key, created_at, retired_at`

func scanSigningKey(sc interface{ Scan(...any) error }) (keys.SigningKeyRecord, error) {
	var (
		k       keys.SigningKeyRecord
		created int64
		retired sql.NullInt64
	)
	err := sc.Scan(&k.Kid, &k.State, &k.Public, &k.Private, &created, &retired)
	k.CreatedAt, k.RetiredAt = time.UnixMicro(created).UTC(), fromMicros(retired)
	return k, err
}

// SigningKeys implements keys.SigningKeyStore.
func (s *Store) SigningKeys(ctx context.Context) ([]keys.SigningKeyRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+signingColumns+` FROM keys_signing ORDER BY created_at, kid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keys.SigningKeyRecord
	for rows.Next() {
		k, err := scanSigningKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// SigningKey implements keys.SigningKeyStore.
func (s *Store) SigningKey(ctx context.Context, kid string) (keys.SigningKeyRecord, error) {
	k, err := scanSigningKey(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+signingColumns+` FROM keys_signing WHERE kid = ?`), kid))
	if errors.Is(err, sql.ErrNoRows) {
		return keys.SigningKeyRecord{}, keys.ErrUnknownKey
	}
	return k, err
}

func (s *Store) insertSigningKey(ctx context.Context, tx *sql.Tx, k keys.SigningKeyRecord, state keys.SigningState) error {
	_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO keys_signing (kid, state, public_key, private_key, created_at) VALUES (?, ?, ?, ?, ?)`),
		k.Kid, string(state), k.Public, k.Private, k.CreatedAt.UnixMicro())
	return conflictOnUnique(err)
}

// InitSigningKeys implements keys.SigningKeyStore.
func (s *Store) InitSigningKeys(ctx context.Context, current, next keys.SigningKeyRecord) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.insertSigningKey(ctx, tx, current, keys.SigningCurrent); err != nil {
			return err
		}
		return s.insertSigningKey(ctx, tx, next, keys.SigningNext)
	})
}

// RotateSigningKeys implements keys.SigningKeyStore.
func (s *Store) RotateSigningKeys(ctx context.Context, current, next string, newNext keys.SigningKeyRecord, at time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		err := exactlyOne(tx.ExecContext(ctx, s.db.Rebind(`UPDATE keys_signing SET state = 'retired', private_key = NULL, retired_at = ? WHERE kid = ? AND state = 'current'`), at.UnixMicro(), current))
		if err != nil {
			return err
		}
		err = exactlyOne(tx.ExecContext(ctx, s.db.Rebind(`UPDATE keys_signing SET state = 'current' WHERE kid = ? AND state = 'next'`), next))
		if err != nil {
			return err
		}
		return s.insertSigningKey(ctx, tx, newNext, keys.SigningNext)
	})
}
