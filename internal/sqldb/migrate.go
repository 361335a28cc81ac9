package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)`

// migrationLockID keys the PostgreSQL advisory lock that serialises nodes
// migrating the same database ("fedrisk" in ASCII).
const migrationLockID = 0x66656472697369

// Version returns the highest applied migration (0 for an empty database).
func (db *DB) Version(ctx context.Context) (int, error) {
	var exists bool
	q := `SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`
	if db.Dialect == Postgres {
		q = `SELECT to_regclass('schema_migrations') IS NOT NULL`
	}
	if err := db.QueryRowContext(ctx, q).Scan(&exists); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return int(v.Int64), nil
}

// ensureMigrationsTable creates schema_migrations. CREATE TABLE IF NOT
// EXISTS races on PostgreSQL when two nodes start together, so it runs under
// the migration lock there.
func (db *DB) ensureMigrationsTable(ctx context.Context) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := db.lock(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	return tx.Commit()
}

func (db *DB) lock(ctx context.Context, tx *sql.Tx) error {
	if db.Dialect != Postgres {
		return nil // SQLite: the immediate transaction holds the write lock
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	return nil
}

// Migrate applies every migration the database lacks and returns the
// versions it applied. It refuses a database newer than the binary.
func (db *DB) Migrate(ctx context.Context) ([]int, error) {
	if err := db.ensureMigrationsTable(ctx); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	have, err := db.Version(ctx)
	if err != nil {
		return nil, err
	}
	if have > Latest() {
		return nil, tooNew(have)
	}
	// Apply every migration not yet recorded (not only those above the
	// highest), so a migration merged from a parallel branch is not skipped;
	// apply re-checks each one under the lock.
	var applied []int
	for _, m := range Migrations() {
		done, err := db.apply(ctx, m)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// Check returns nil when the schema is exactly the binary's, ErrTooNew
// when it is newer, ErrNotMigrated when it is older.
func (db *DB) Check(ctx context.Context) error {
	have, err := db.Version(ctx)
	if err != nil {
		return err
	}
	if have > Latest() {
		return tooNew(have)
	}
	applied := map[int]bool{}
	if have > 0 {
		rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return fmt.Errorf("schema version: %w", err)
			}
			applied[v] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
	}
	// Every migration must be there, not only the highest: one merged
	// from a parallel branch may have a lower number.
	for _, m := range Migrations() {
		if !applied[m.Version] {
			return fmt.Errorf("%w: migration %04d_%s not applied (database at %d, binary %d); run `fedrisk migrate` or set migrate_on_start", ErrNotMigrated, m.Version, m.Name, have, Latest())
		}
	}
	return nil
}

func tooNew(have int) error {
	return fmt.Errorf("%w: database at version %d, this binary knows up to %d; upgrade fedrisk or point it at another database", ErrTooNew, have, Latest())
}

// apply runs one migration in a transaction. Another node may be migrating
// the same database: on PostgreSQL an advisory lock serialises them, on
// SQLite the immediate transaction does; either way the version is checked
// again under the lock.
func (db *DB) apply(ctx context.Context, m Migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	defer tx.Rollback()
	if err := db.lock(ctx, tx); err != nil {
		return false, err
	}
	var exists int
	err = tx.QueryRowContext(ctx, db.Rebind(`SELECT 1 FROM schema_migrations WHERE version = ?`), m.Version).Scan(&exists)
	if err == nil {
		return false, nil // applied meanwhile by another node
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, db.expand(m.SQL)); err != nil {
		return false, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return false, fmt.Errorf("migration %04d_%s: record: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %04d_%s: commit: %w", m.Version, m.Name, err)
	}
	return true, nil
}
