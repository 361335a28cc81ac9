// Package sqlprivacy implements privacy.Ledger on the node's SQL database,
// SQLite or PostgreSQL (internal/sqldb, tables in migration 0008_privacy).
//
// The database decides races. A charge is one conditional upsert:
//
//	INSERT INTO privacy_budgets (...) VALUES (..., cost, ...)
//	ON CONFLICT (key, window) DO UPDATE SET spent = spent + cost
//	WHERE spent + cost <= total RETURNING spent
//
// which on PostgreSQL locks the budget row and re-evaluates the condition
// on its latest version (so concurrent charges queue and none overspends),
// and on SQLite runs inside an immediate write transaction (one writer at
// a time; a Ledger also queues its own write transactions in Go, so that
// a burst of charges waits in order instead of polling SQLite's busy
// handler). No row back means the budget is exhausted and nothing changed.
// The charge row is inserted in the same transaction, so a crash leaves
// either both or neither: a committed charge stays counted until Refund.
//
// A refund marks the charge refunded (only if it was not) and subtracts
// its amount from the budget it was taken from, in one transaction; the
// lock order is the charge row, then the budget row, and a charge never
// locks an existing charge row, so the two never deadlock.
package sqlprivacy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/privacy"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Auditor appends to the audit log inside a transaction of the same
// database (*sqlaudit.Log).
type Auditor interface {
	AppendTx(ctx context.Context, tx *sql.Tx, e audit.Event) (audit.Entry, error)
}

// Options configures a Ledger.
type Options struct {
	// Host is this node's party name, reported as Gauge.Host.
	Host string
	// Audit, if set, records every policy change (actor, old and new) in
	// the transaction that makes it.
	Audit Auditor
	// Now is the clock that picks the current window; nil means time.Now.
	Now func() time.Time
}

// Ledger implements privacy.Ledger.
type Ledger struct {
	db    *sqldb.DB
	host  string
	now   func() time.Time
	audit Auditor
	// writer is held by each write transaction on SQLite, which runs one
	// writer at a time anyway: waiting here is first come, first served,
	// where hundreds of connections polling SQLite's busy handler would
	// let some wait past its timeout. Nil on PostgreSQL.
	writer chan struct{}
}

var _ privacy.Ledger = (*Ledger)(nil)

// New returns a Ledger on db, which must be migrated.
func New(db *sqldb.DB, o Options) *Ledger {
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Ledger{db: db, host: o.Host, now: o.Now, audit: o.Audit}
	if db.Dialect == sqldb.SQLite {
		l.writer = make(chan struct{}, 1)
	}
	return l
}

// inTx runs fn in a write transaction (sqldb.InTx), on SQLite one at a
// time per Ledger.
func (l *Ledger) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if l.writer != nil {
		select {
		case l.writer <- struct{}{}:
			defer func() { <-l.writer }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.db.InTx(ctx, fn)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func newChargeID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return "chg_" + hex.EncodeToString(b[:])
}

func (l *Ledger) policy(ctx context.Context, q queryer, purpose string) (privacy.Policy, error) {
	return l.readPolicy(ctx, q, purpose, "")
}

// policyShared reads the policy for a charge: on PostgreSQL FOR SHARE, so
// that a policy change waits for the charge, or the charge for the change,
// and a charge never lands in a window the change has moved past.
func (l *Ledger) policyShared(ctx context.Context, q queryer, purpose string) (privacy.Policy, error) {
	if l.db.Dialect == sqldb.Postgres {
		return l.readPolicy(ctx, q, purpose, " FOR SHARE")
	}
	return l.readPolicy(ctx, q, purpose, "")
}

func (l *Ledger) readPolicy(ctx context.Context, q queryer, purpose, lock string) (privacy.Policy, error) {
	var (
		window, total int64
		onExhausted   string
	)
	err := q.QueryRowContext(ctx, l.db.Rebind(`SELECT window_micros, total, on_exhausted FROM privacy_policies WHERE purpose = ?`+lock), purpose).
		Scan(&window, &total, &onExhausted)
	if errors.Is(err, sql.ErrNoRows) {
		return privacy.Policy{}, fmt.Errorf("%w %q", privacy.ErrNoPolicy, purpose)
	}
	if err != nil {
		return privacy.Policy{}, err
	}
	return privacy.Policy{Window: time.Duration(window) * time.Microsecond, Total: privacy.Amount(total), OnExhausted: privacy.ExhaustionPolicy(onExhausted)}, nil
}

func (l *Ledger) spent(ctx context.Context, q queryer, k privacy.Key, w privacy.Window) (privacy.Amount, error) {
	var spent int64
	err := q.QueryRowContext(ctx, l.db.Rebind(`SELECT spent FROM privacy_budgets
		WHERE party = ? AND purpose = ? AND subject = ? AND window_start = ? AND window_end = ?`),
		k.Party, k.Purpose, k.Subject, w.Start.UnixMicro(), w.End.UnixMicro()).Scan(&spent)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return privacy.Amount(spent), err
}

// Charge implements privacy.Charger.
func (l *Ledger) Charge(ctx context.Context, key privacy.Key, cost privacy.Amount) (privacy.Charge, error) {
	if err := key.Validate(); err != nil {
		return privacy.Charge{}, fmt.Errorf("charge: %w", err)
	}
	if cost <= 0 || cost > privacy.MaxAmount {
		return privacy.Charge{}, fmt.Errorf("charge: %w: cost %d µε, want 1..%d", privacy.ErrInvalid, cost, privacy.MaxAmount)
	}
	now := l.now()
	id := newChargeID()
	var out privacy.Charge
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		pol, err := l.policyShared(ctx, tx, key.Purpose)
		if err != nil {
			return err
		}
		w := pol.WindowAt(now)
		exhausted := func() error {
			spent, err := l.spent(ctx, tx, key, w)
			if err != nil {
				return err
			}
			return &privacy.ExhaustedError{Purpose: key.Purpose, OnExhausted: pol.Normalized().OnExhausted,
				Cost: cost, Remaining: max(pol.Total-spent, 0), Total: pol.Total, Window: w}
		}
		if cost > pol.Total {
			return exhausted()
		}
		var spent int64
		err = tx.QueryRowContext(ctx, l.db.Rebind(`INSERT INTO privacy_budgets
			(party, purpose, subject, window_start, window_end, spent, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (party, purpose, subject, window_start, window_end) DO UPDATE
			SET spent = privacy_budgets.spent + excluded.spent, updated_at = excluded.updated_at
			WHERE privacy_budgets.spent + excluded.spent <= ?
			RETURNING spent`),
			key.Party, key.Purpose, key.Subject, w.Start.UnixMicro(), w.End.UnixMicro(), int64(cost), now.UnixMicro(), int64(pol.Total)).
			Scan(&spent)
		if errors.Is(err, sql.ErrNoRows) {
			return exhausted()
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, l.db.Rebind(`INSERT INTO privacy_charges
			(id, party, purpose, subject, window_start, window_end, amount, charged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
			id, key.Party, key.Purpose, key.Subject, w.Start.UnixMicro(), w.End.UnixMicro(), int64(cost), now.UnixMicro()); err != nil {
			return err
		}
		out = privacy.Charge{ID: id, Cost: cost, Remaining: max(pol.Total-privacy.Amount(spent), 0), Total: pol.Total, Window: w}
		return nil
	})
	if err != nil {
		return privacy.Charge{}, fmt.Errorf("charge: %w", err)
	}
	return out, nil
}

// Refund implements privacy.Charger.
func (l *Ledger) Refund(ctx context.Context, chargeID string) error {
	if chargeID == "" || len(chargeID) > 64 {
		return fmt.Errorf("refund: %w: charge id", privacy.ErrInvalid)
	}
	now := l.now().UnixMicro()
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		var (
			party, purpose, subject string
			start, end, amount      int64
		)
		err := tx.QueryRowContext(ctx, l.db.Rebind(`UPDATE privacy_charges SET refunded_at = ?
			WHERE id = ? AND refunded_at IS NULL
			RETURNING party, purpose, subject, window_start, window_end, amount`), now, chargeID).
			Scan(&party, &purpose, &subject, &start, &end, &amount)
		if errors.Is(err, sql.ErrNoRows) {
			var one int
			err := tx.QueryRowContext(ctx, l.db.Rebind(`SELECT 1 FROM privacy_charges WHERE id = ?`), chargeID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return privacy.ErrUnknownCharge
			}
			return err // nil: refunded before
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, l.db.Rebind(`UPDATE privacy_budgets SET spent = spent - ?, updated_at = ?
			WHERE party = ? AND purpose = ? AND subject = ? AND window_start = ? AND window_end = ?`),
			amount, now, party, purpose, subject, start, end)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("budget of charge not found (%d rows, %v)", n, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	return nil
}

// Remaining implements privacy.Ledger.
func (l *Ledger) Remaining(ctx context.Context, key privacy.Key) (privacy.Balance, error) {
	if err := key.Validate(); err != nil {
		return privacy.Balance{}, fmt.Errorf("remaining: %w", err)
	}
	pol, err := l.policy(ctx, l.db, key.Purpose)
	if err != nil {
		return privacy.Balance{}, fmt.Errorf("remaining: %w", err)
	}
	w := pol.WindowAt(l.now())
	spent, err := l.spent(ctx, l.db, key, w)
	if err != nil {
		return privacy.Balance{}, fmt.Errorf("remaining: %w", err)
	}
	return balance(key, w, spent, pol.Total), nil
}

func balance(k privacy.Key, w privacy.Window, spent, total privacy.Amount) privacy.Balance {
	return privacy.Balance{Key: k, Window: w, Spent: spent, Remaining: max(total-spent, 0), Total: total}
}

// SetPolicy implements privacy.Ledger. In one transaction it replaces the
// policy, carries what was spent into the new policy's current window when
// the window length changes, and (with Options.Audit) records who changed
// what from what.
//
// The carry moves, for every (party, subject), the charges of the window
// that was current at the change and those charged since the new window
// began into the new current window (budget rows and charge rows alike,
// so a later refund still finds its charge): a new window length never
// frees budget that was spent.
func (l *Ledger) SetPolicy(ctx context.Context, purpose string, p privacy.Policy, actor string) error {
	if purpose == "" || len(purpose) > 256 {
		return fmt.Errorf("set policy: %w: purpose must be 1..256 bytes", privacy.ErrInvalid)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("set policy: %w", err)
	}
	p = p.Normalized()
	now := l.now()
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		// On PostgreSQL the read locks the policy row (FOR UPDATE) and
		// charges read it FOR SHARE: no charge runs on the old policy
		// while the change moves what was spent.
		var old privacy.Policy
		var had bool
		var window, total int64
		var onExhausted string
		err := tx.QueryRowContext(ctx, l.db.Rebind(`SELECT window_micros, total, on_exhausted FROM privacy_policies WHERE purpose = ?`+l.lock()), purpose).
			Scan(&window, &total, &onExhausted)
		switch {
		case err == nil:
			had = true
			old = privacy.Policy{Window: time.Duration(window) * time.Microsecond, Total: privacy.Amount(total), OnExhausted: privacy.ExhaustionPolicy(onExhausted)}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.ExecContext(ctx, l.db.Rebind(`INSERT INTO privacy_policies (purpose, window_micros, total, on_exhausted, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (purpose) DO UPDATE SET window_micros = excluded.window_micros, total = excluded.total,
				on_exhausted = excluded.on_exhausted, updated_at = excluded.updated_at`),
			purpose, p.Window.Microseconds(), int64(p.Total), string(p.OnExhausted), now.UnixMicro()); err != nil {
			return err
		}
		if had && old.Window != p.Window {
			if err := l.carry(ctx, tx, purpose, old.WindowAt(now), p.WindowAt(now), now); err != nil {
				return fmt.Errorf("carry spent budget into the new window: %w", err)
			}
		}
		if l.audit == nil {
			return nil
		}
		d := map[string]string{"window": p.Window.String(), "total": p.Total.String(), "on_exhausted": string(p.OnExhausted)}
		if had {
			d["old_window"], d["old_total"], d["old_on_exhausted"] = old.Window.String(), old.Total.String(), string(old.OnExhausted)
		}
		_, err = l.audit.AppendTx(ctx, tx, audit.Event{At: now, Actor: actor, Action: "privacy.policy.set", Object: purpose, Details: d})
		return err
	})
	if err != nil {
		return fmt.Errorf("set policy: %w", err)
	}
	return nil
}

// carry moves into window to the charges of purpose that count in from
// (the window current before the change) or were charged since to began,
// with their unrefunded amounts.
func (l *Ledger) carry(ctx context.Context, tx *sql.Tx, purpose string, from, to privacy.Window, now time.Time) error {
	// The charges that move (c.): not already in to; in from, or charged
	// within to. Every one of them ends after to.Start, which keeps the
	// scan on the window_end index.
	const moving = `c.purpose = ? AND c.window_end > ? AND NOT (c.window_start = ? AND c.window_end = ?)
		AND ((c.window_start = ? AND c.window_end = ?) OR (c.charged_at >= ? AND c.charged_at < ?))`
	ts, te, fs, fe := to.Start.UnixMicro(), to.End.UnixMicro(), from.Start.UnixMicro(), from.End.UnixMicro()
	args := []any{purpose, ts, ts, te, fs, fe, ts, te}
	if _, err := tx.ExecContext(ctx, l.db.Rebind(`INSERT INTO privacy_budgets (party, purpose, subject, window_start, window_end, spent, updated_at)
		SELECT c.party, c.purpose, c.subject, ?, ?, SUM(CASE WHEN c.refunded_at IS NULL THEN c.amount ELSE 0 END), ?
		FROM privacy_charges c WHERE `+moving+`
		GROUP BY c.party, c.purpose, c.subject
		ON CONFLICT (party, purpose, subject, window_start, window_end) DO UPDATE
		SET spent = privacy_budgets.spent + excluded.spent, updated_at = excluded.updated_at`),
		append([]any{ts, te, now.UnixMicro()}, args...)...); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, l.db.Rebind(`UPDATE privacy_budgets SET updated_at = ?, spent = spent - (
			SELECT COALESCE(SUM(c.amount), 0) FROM privacy_charges c
			WHERE c.party = privacy_budgets.party AND c.subject = privacy_budgets.subject
				AND c.window_start = privacy_budgets.window_start AND c.window_end = privacy_budgets.window_end
				AND c.refunded_at IS NULL AND `+moving+`)
		WHERE purpose = ? AND window_end > ? AND NOT (window_start = ? AND window_end = ?)`),
		append(append([]any{now.UnixMicro()}, args...), purpose, ts, ts, te)...); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, l.db.Rebind(`UPDATE privacy_charges SET window_start = ?, window_end = ?
		WHERE id IN (SELECT c.id FROM privacy_charges c WHERE `+moving+`)`), append([]any{ts, te}, args...)...)
	return err
}

// lock is the row lock a read of the policy takes inside a write
// transaction on PostgreSQL (SQLite runs one writer at a time).
func (l *Ledger) lock() string {
	if l.db.Dialect == sqldb.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// Policy implements privacy.Ledger.
func (l *Ledger) Policy(ctx context.Context, purpose string) (privacy.Policy, error) {
	p, err := l.policy(ctx, l.db, purpose)
	if err != nil {
		return privacy.Policy{}, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

// Policies implements privacy.Ledger.
func (l *Ledger) Policies(ctx context.Context) (map[string]privacy.Policy, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT purpose, window_micros, total, on_exhausted FROM privacy_policies`)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer rows.Close()
	out := map[string]privacy.Policy{}
	for rows.Next() {
		var (
			purpose, onExhausted string
			window, total        int64
		)
		if err := rows.Scan(&purpose, &window, &total, &onExhausted); err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		out[purpose] = privacy.Policy{Window: time.Duration(window) * time.Microsecond, Total: privacy.Amount(total), OnExhausted: privacy.ExhaustionPolicy(onExhausted)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return out, nil
}

// cursor is the position after the last budget of a page.
type cursor struct {
	Party   string `json:"p"`
	Purpose string `json:"u"`
	Subject string `json:"s"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Party == "" || c.Purpose == "" || c.Subject == "" {
		return cursor{}, fmt.Errorf("%w: page cursor", privacy.ErrInvalid)
	}
	return c, nil
}

// List implements privacy.Ledger. The current window of each budget is
// the one of its purpose's current policy.
func (l *Ledger) List(ctx context.Context, f privacy.Filter) (privacy.Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = privacy.DefaultLimit
	}
	limit = min(limit, privacy.MaxLimit)
	now := l.now().UnixMicro()
	var (
		where = []string{"b.window_end - b.window_start = p.window_micros", "b.window_start <= ?", "b.window_end > ?"}
		args  = []any{now, now}
	)
	if f.Party != "" {
		where, args = append(where, "b.party = ?"), append(args, f.Party)
	}
	if f.Purpose != "" {
		where, args = append(where, "b.purpose = ?"), append(args, f.Purpose)
	}
	if f.After != "" {
		c, err := decodeCursor(f.After)
		if err != nil {
			return privacy.Page{}, fmt.Errorf("list budgets: %w", err)
		}
		where, args = append(where, "(b.party, b.purpose, b.subject) > (?, ?, ?)"), append(args, c.Party, c.Purpose, c.Subject)
	}
	args = append(args, limit+1)
	rows, err := l.db.QueryContext(ctx, l.db.Rebind(`SELECT b.party, b.purpose, b.subject, b.window_start, p.window_micros, b.spent, p.total
		FROM privacy_budgets b JOIN privacy_policies p ON p.purpose = b.purpose
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY b.party, b.purpose, b.subject LIMIT ?`), args...)
	if err != nil {
		return privacy.Page{}, fmt.Errorf("list budgets: %w", err)
	}
	defer rows.Close()
	var page privacy.Page
	for rows.Next() {
		var (
			k                           privacy.Key
			start, length, spent, total int64
		)
		if err := rows.Scan(&k.Party, &k.Purpose, &k.Subject, &start, &length, &spent, &total); err != nil {
			return privacy.Page{}, fmt.Errorf("list budgets: %w", err)
		}
		page.Balances = append(page.Balances, balance(k, privacy.WindowOf(start/length, length), privacy.Amount(spent), privacy.Amount(total)))
	}
	if err := rows.Err(); err != nil {
		return privacy.Page{}, fmt.Errorf("list budgets: %w", err)
	}
	if len(page.Balances) > limit {
		page.Balances = page.Balances[:limit]
		last := page.Balances[limit-1].Key
		page.Next = encodeCursor(cursor{Party: last.Party, Purpose: last.Purpose, Subject: last.Subject})
	}
	return page, nil
}

// Snapshot implements privacy.Ledger: per purpose, the largest spent and
// the number of budgets with 5·spent > 4·total (remaining < 20%) in the
// purpose's current window.
func (l *Ledger) Snapshot(ctx context.Context) ([]privacy.Gauge, error) {
	pols, err := l.Policies(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	purposes := make([]string, 0, len(pols))
	for p := range pols {
		purposes = append(purposes, p)
	}
	sort.Strings(purposes)
	now := l.now()
	out := make([]privacy.Gauge, 0, len(purposes))
	for _, purpose := range purposes {
		pol := pols[purpose]
		w := pol.WindowAt(now)
		var maxSpent, low, n int64
		err := l.db.QueryRowContext(ctx, l.db.Rebind(`SELECT COALESCE(MAX(spent), 0), COUNT(CASE WHEN 5 * spent > ? THEN 1 END), COUNT(*)
			FROM privacy_budgets WHERE purpose = ? AND window_start = ? AND window_end = ?`),
			4*int64(pol.Total), purpose, w.Start.UnixMicro(), w.End.UnixMicro()).Scan(&maxSpent, &low, &n)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		g := privacy.Gauge{Host: l.host, Purpose: purpose, MinRemainingFraction: 1, SubjectsBelow20Percent: low}
		if pol.Total == 0 {
			g.MinRemainingFraction = 0
		} else if n > 0 {
			g.MinRemainingFraction = privacy.Fraction(pol.Total-privacy.Amount(maxSpent), pol.Total)
		}
		out = append(out, g)
	}
	return out, nil
}

// Prune implements privacy.Ledger.
func (l *Ledger) Prune(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, l.db.Rebind(`DELETE FROM privacy_charges WHERE window_end <= ?`), t.UnixMicro()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, l.db.Rebind(`DELETE FROM privacy_budgets WHERE window_end <= ?`), t.UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return n, nil
}
