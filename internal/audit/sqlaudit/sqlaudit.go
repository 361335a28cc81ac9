// Package sqlaudit stores the audit log (package audit) in the node's SQL
// database, SQLite or PostgreSQL, in the tables audit_log and
// audit_checkpoints (migration 0003_audit).
//
// Appends are serialised so the chain never forks: on PostgreSQL every
// append takes a transaction-scoped advisory lock before it reads the head,
// which also orders appends from several processes sharing the database; on
// SQLite the database's immediate transactions already hold the write lock
// from BEGIN. The new entry's seq is the head's plus one, so a removed entry
// leaves a gap, and seq is the primary key, so two appends that somehow read
// the same head cannot both commit.
//
// AppendTx appends inside the caller's transaction, so a change and its
// audit entry commit together or not at all. The lock is held until that
// transaction ends: call AppendTx last, just before Commit, and keep the
// transaction short. The transaction must use the default READ COMMITTED
// isolation on PostgreSQL (a snapshot taken before the lock would read a
// stale head, and the append would fail on the primary key).
//
// Checkpoints are signed outside any transaction, so a slow signer (a KMS)
// never holds the append lock; two nodes checkpointing the same head store
// one checkpoint.
package sqlaudit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// lockID keys the PostgreSQL advisory lock that serialises appends ("audit"
// in ASCII; the migrations use "fedrisk").
const lockID = 0x6175646974

// List limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Log is the audit log in one database. It is safe for concurrent use.
type Log struct {
	db *sqldb.DB
}

// New returns the log stored in db, which must be migrated.
func New(db *sqldb.DB) *Log { return &Log{db: db} }

// Filter selects entries for List. Zero fields do not filter.
type Filter struct {
	Subject  string // entries about this pseudonym
	Action   string
	Actions  []string // any of these actions
	AfterSeq int64    // entries after this seq: pass the last seq seen to page
	Limit    int      // DefaultLimit when <= 0, at most MaxLimit
}

// Append records e in a transaction of its own and returns the entry.
func (l *Log) Append(ctx context.Context, e audit.Event) (audit.Entry, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	defer tx.Rollback()
	entry, err := l.AppendTx(ctx, tx, e)
	if err != nil {
		return audit.Entry{}, err
	}
	if err := tx.Commit(); err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: commit: %w", err)
	}
	return entry, nil
}

// AppendTx records e inside tx, a transaction on the log's database, and
// returns the entry it will be once tx commits. If tx rolls back, the entry
// never existed and the chain is unaffected. Invalid events (see
// audit.Event.Validate) are refused with an error wrapping
// audit.ErrInvalidEvent.
func (l *Log) AppendTx(ctx context.Context, tx *sql.Tx, e audit.Event) (audit.Entry, error) {
	if err := e.Validate(); err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = time.UnixMicro(e.At.UnixMicro()).UTC()
	e.Details = maps.Clone(e.Details)
	if len(e.Details) == 0 {
		e.Details = nil
	}
	details, err := encodeDetails(e.Details)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	if l.db.Dialect == sqldb.Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockID)); err != nil {
			return audit.Entry{}, fmt.Errorf("append audit entry: lock: %w", err)
		}
	}
	entry := audit.Entry{Event: e}
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&entry.Seq, &entry.PrevHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		entry.PrevHash = make([]byte, audit.HashSize)
	case err != nil:
		return audit.Entry{}, fmt.Errorf("append audit entry: read head: %w", err)
	}
	entry.Seq++
	entry.Hash = entry.ComputeHash()
	_, err = tx.ExecContext(ctx, l.db.Rebind(`INSERT INTO audit_log (seq, at, actor, action, subject, object, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		entry.Seq, e.At.UnixMicro(), e.Actor, e.Action, e.Subject, e.Object, details, entry.PrevHash, entry.Hash)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	return entry, nil
}

// encodeDetails returns the canonical JSON of d: an object with its keys in
// order ("{}" when empty). Validated strings (UTF-8) round-trip exactly.
func encodeDetails(d map[string]string) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(d) // sorts the keys
	return string(b), err
}

// decodeDetails parses a stored details column; an empty object is nil.
func decodeDetails(s string) (map[string]string, error) {
	var d map[string]string
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("details are not an object")
	}
	if len(d) == 0 {
		return nil, nil
	}
	return d, nil
}

// Head returns the seq of the last entry (0 for an empty log).
func (l *Log) Head(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := l.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM audit_log`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("audit head: %w", err)
	}
	return seq.Int64, nil
}

// List returns the entries f selects, oldest first (newest last). To read
// everything, e.g. for a data-subject export, call it again with AfterSeq
// set to the last seq returned until it returns fewer than the limit.
func (l *Log) List(ctx context.Context, f Filter) ([]audit.Entry, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	f.Limit = min(f.Limit, MaxLimit)
	rows, err := l.page(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	out := make([]audit.Entry, len(rows))
	for i, r := range rows {
		if r.bad != nil {
			return nil, fmt.Errorf("list audit entries: %w", r.bad)
		}
		out[i] = r.entry
	}
	return out, nil
}

// row is a stored entry; bad is set when it cannot be decoded.
type row struct {
	entry audit.Entry
	bad   *audit.Problem
}

func (l *Log) page(ctx context.Context, f Filter) ([]row, error) {
	q := `SELECT seq, at, actor, action, subject, object, details, prev_hash, hash FROM audit_log WHERE seq > ?`
	args := []any{f.AfterSeq}
	if f.Subject != "" {
		q += ` AND subject = ?`
		args = append(args, f.Subject)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	if len(f.Actions) > 0 {
		q += ` AND action IN (?` + strings.Repeat(`, ?`, len(f.Actions)-1) + `)`
		for _, a := range f.Actions {
			args = append(args, a)
		}
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, f.Limit)
	rs, err := l.db.QueryContext(ctx, l.db.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		var at int64
		var details string
		e := &r.entry
		if err := rs.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Subject, &e.Object, &details, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At = time.UnixMicro(at).UTC()
		if e.Details, err = decodeDetails(details); err != nil {
			r.bad = &audit.Problem{Seq: e.Seq, Reason: "details are not a JSON object of strings (entry altered)"}
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// Verify checks the whole log against the checkpoints stored with it (see
// audit.Verify), reading the entries a page at a time.
func (l *Log) Verify(ctx context.Context, v audit.SignatureVerifier) (audit.Report, error) {
	return l.VerifyWith(ctx, v, nil)
}

// VerifyWith is Verify with, in addition, checkpoints kept outside the
// database (by an auditor, say): they reveal a rewrite even when the stored
// checkpoints covering it were deleted.
func (l *Log) VerifyWith(ctx context.Context, v audit.SignatureVerifier, kept []audit.Checkpoint) (audit.Report, error) {
	cps, err := l.checkpoints(ctx)
	if err != nil {
		return audit.Report{}, fmt.Errorf("verify audit log: %w", err)
	}
	cps = append(cps, kept...)
	var buf []row
	after, done := int64(0), false
	next := func() (audit.Entry, bool, error) {
		if len(buf) == 0 && !done {
			var err error
			if buf, err = l.page(ctx, Filter{AfterSeq: after, Limit: MaxLimit}); err != nil {
				return audit.Entry{}, false, err
			}
			done = len(buf) < MaxLimit
		}
		if len(buf) == 0 {
			return audit.Entry{}, false, nil
		}
		r := buf[0]
		buf = buf[1:]
		after = r.entry.Seq
		if r.bad != nil {
			return r.entry, true, r.bad
		}
		return r.entry, true, nil
	}
	return audit.Verify(ctx, next, cps, v)
}

func (l *Log) checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rs, err := l.db.QueryContext(ctx, `SELECT seq, hash, at, kid, signature FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []audit.Checkpoint
	for rs.Next() {
		var c audit.Checkpoint
		var at int64
		if err := rs.Scan(&c.Seq, &c.Hash, &at, &c.KID, &c.Signature); err != nil {
			return nil, err
		}
		c.At = time.UnixMicro(at).UTC()
		out = append(out, c)
	}
	return out, rs.Err()
}

// Checkpoint signs the current head with s and stores the checkpoint. If
// nothing was appended since the last checkpoint it signs nothing and
// returns that checkpoint; for an empty log it returns the zero Checkpoint.
func (l *Log) Checkpoint(ctx context.Context, s audit.Signer) (audit.Checkpoint, error) {
	var c audit.Checkpoint
	err := l.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&c.Seq, &c.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return audit.Checkpoint{}, nil
	case err != nil:
		return audit.Checkpoint{}, fmt.Errorf("audit checkpoint: read head: %w", err)
	}
	last, err := l.checkpointAt(ctx, `SELECT seq, hash, at, kid, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return audit.Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	if err == nil && last.Seq >= c.Seq {
		return last, nil
	}
	c.At = time.UnixMicro(time.Now().UnixMicro()).UTC()
	if c.KID, c.Signature, err = s.SignCheckpoint(ctx, c.SignedBytes()); err != nil {
		return audit.Checkpoint{}, fmt.Errorf("audit checkpoint: sign: %w", err)
	}
	if c.KID == "" || len(c.Signature) == 0 {
		return audit.Checkpoint{}, errors.New("audit checkpoint: sign: signer returned no key id or no signature")
	}
	res, err := l.db.ExecContext(ctx, l.db.Rebind(`INSERT INTO audit_checkpoints (seq, hash, at, kid, signature)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`), c.Seq, c.Hash, c.At.UnixMicro(), c.KID, c.Signature)
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("audit checkpoint: store: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 { // another node checkpointed this head first
		if c, err = l.checkpointAt(ctx, l.db.Rebind(`SELECT seq, hash, at, kid, signature FROM audit_checkpoints WHERE seq = ?`), c.Seq); err != nil {
			return audit.Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
		}
	}
	return c, nil
}

func (l *Log) checkpointAt(ctx context.Context, q string, args ...any) (audit.Checkpoint, error) {
	var c audit.Checkpoint
	var at int64
	if err := l.db.QueryRowContext(ctx, q, args...).Scan(&c.Seq, &c.Hash, &at, &c.KID, &c.Signature); err != nil {
		return audit.Checkpoint{}, err
	}
	c.At = time.UnixMicro(at).UTC()
	return c, nil
}

// checkpointTimeout bounds one checkpoint, signing included.
const checkpointTimeout = 30 * time.Second

// RunCheckpoints makes a checkpoint every interval (a minute when every <=
// 0) until ctx ends, then a last one, so that a clean shutdown leaves every
// entry covered. Failures are logged and retried at the next tick. log may
// be nil.
func (l *Log) RunCheckpoints(ctx context.Context, s audit.Signer, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "audit")
	if every <= 0 {
		every = time.Minute
	}
	checkpoint := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
		defer cancel()
		if c, err := l.Checkpoint(ctx, s); err != nil {
			log.Warn("audit checkpoint failed", "err", err)
		} else {
			log.Debug("audit checkpoint", "seq", c.Seq)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			checkpoint(context.WithoutCancel(ctx))
			return
		case <-t.C:
			checkpoint(ctx)
		}
	}
}
