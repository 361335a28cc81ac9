package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxTxAttempts bounds how often InTx runs a transaction that lost a race.
const MaxTxAttempts = 8

// ErrRetry marks a transaction that lost a race to a concurrent one (a
// unique violation on a row another transaction just created, say) and
// must run again from the start: wrap it into fn's error.
var ErrRetry = errors.New("lost a race to a concurrent transaction")

// Retryable reports whether running a transaction again may succeed: it
// lost a race (ErrRetry) or PostgreSQL aborted it as a deadlock victim or
// a serialization failure.
func Retryable(err error) bool {
	if errors.Is(err, ErrRetry) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 40P01") || strings.Contains(s, "SQLSTATE 40001")
}

// InTx runs fn in a transaction and commits it, running it again with a
// new transaction while it fails in a retryable way. fn must not keep
// results from an earlier attempt.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || !Retryable(err) || ctx.Err() != nil {
			return err
		}
		if attempt == MaxTxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
	}
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// ForShare is the clause that locks the rows a SELECT reads against
// concurrent updates until the transaction ends. SQLite needs no row locks
// (one writer at a time) and has no such clause.
func (db *DB) ForShare() string {
	if db.Dialect == Postgres {
		return " FOR SHARE"
	}
	return ""
}

// Micros is how times are stored: BIGINT Unix microseconds, 0 for the zero
// time.
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromMicros reads a time stored by Micros (UTC; 0 is the zero time).
func FromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
