// Package sqlconsent implements consent.Store on the node's SQL database,
// SQLite or PostgreSQL (internal/sqldb, tables in migration 0004_consent).
//
// Every change runs in one transaction together with its audit entry
// (audit/sqlaudit AppendTx), appended last so that the audit chain's lock is
// held as briefly as possible and always taken after the consent rows: the
// lock order is subjects, consents, audit log, in every method.
//
// The database, not this code, decides races. The partial unique index
// consents_one_active keeps one active consent per (subject, purpose,
// party); the unique blind index keeps one subject per identifier; the
// unique idempotency index keeps one consent per idempotency key. A
// transaction that loses such a race on PostgreSQL (on SQLite the immediate
// write transactions never overlap) gets a unique violation and is run
// again from the start, where the ordinary checks see the winner and give
// the domain answer: ErrConsentExists, a replay, the existing subject.
//
// NeedsRenewal is not stored: every read joins purposes and derives it from
// the purpose's current policy version and renew_on_new_policy.
package sqlconsent

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Store implements consent.Store.
type Store struct {
	db  *sqldb.DB
	log *sqlaudit.Log
}

var _ consent.Store = (*Store)(nil)

// New returns a Store on db that appends its audit events to log. log must
// use the same database.
func New(db *sqldb.DB, log *sqlaudit.Log) *Store { return &Store{db: db, log: log} }

// queryer is what reads need: the database or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// nullBytes stores nil as NULL (drivers differ on what a nil []byte is).
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func rowsAffected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}

// ---- purposes and policies ----

const purposeCols = `id, description, policy_version, policy_url, renew_on_new_policy, default_validity_seconds, created_at`

func scanPurpose(row interface{ Scan(...any) error }) (consent.Purpose, error) {
	var (
		p                 consent.Purpose
		validity, created int64
	)
	if err := row.Scan(&p.ID, &p.Description, &p.PolicyVersion, &p.PolicyURL, &p.RenewOnNewPolicy, &validity, &created); err != nil {
		return consent.Purpose{}, err
	}
	p.DefaultValidity = time.Duration(validity) * time.Second
	p.CreatedAt = fromMicros(created)
	return p, nil
}

// CreatePurpose implements consent.Store. policy is the purpose's first
// policy text: its Purpose (if set) and Version must match p.
func (s *Store) CreatePurpose(ctx context.Context, p consent.Purpose, policy consent.Policy, ev audit.Event) error {
	if policy.Purpose == "" {
		policy.Purpose = p.ID
	}
	switch {
	case p.ID == "":
		return fmt.Errorf("create purpose: %w", &consent.ValidationError{Field: "purpose", Reason: "must not be empty"})
	case p.PolicyVersion < 1:
		return fmt.Errorf("create purpose: %w", &consent.ValidationError{Field: "policy_version", Reason: "must be at least 1"})
	case policy.Purpose != p.ID || policy.Version != p.PolicyVersion:
		return fmt.Errorf("create purpose: %w", &consent.ValidationError{Field: "policy", Reason: "must be the purpose's current policy version"})
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO purposes (`+purposeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			p.ID, p.Description, p.PolicyVersion, p.PolicyURL, p.RenewOnNewPolicy, int64(p.DefaultValidity/time.Second), micros(p.CreatedAt))
		if sqldb.IsUniqueViolation(err) {
			return consent.ErrPurposeExists
		}
		if err != nil {
			return err
		}
		if err := s.insertPolicy(ctx, tx, policy); err != nil {
			return err
		}
		_, err = s.log.AppendTx(ctx, tx, ev)
		return err
	})
	if err != nil {
		return fmt.Errorf("create purpose %s: %w", p.ID, err)
	}
	return nil
}

func (s *Store) insertPolicy(ctx context.Context, tx *sql.Tx, p consent.Policy) error {
	_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO policies (purpose, version, text, published_at) VALUES (?, ?, ?, ?)`),
		p.Purpose, p.Version, p.Text, micros(p.PublishedAt))
	if err != nil {
		return fmt.Errorf("insert policy: %w", err)
	}
	return nil
}

// PublishPolicy implements consent.Store.
func (s *Store) PublishPolicy(ctx context.Context, policy consent.Policy, ev audit.Event) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		// The conditional update is the check: of two concurrent publishers
		// of the same version one matches, the other finds it moved on.
		res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE purposes SET policy_version = ? WHERE id = ? AND policy_version = ?`),
			policy.Version, policy.Purpose, policy.Version-1)
		if err != nil {
			return err
		}
		if n, err := rowsAffected(res); err != nil {
			return err
		} else if n == 0 {
			var current int
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT policy_version FROM purposes WHERE id = ?`), policy.Purpose).Scan(&current)
			if errors.Is(err, sql.ErrNoRows) {
				return consent.ErrUnknownPurpose
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("current version is %d, want %d: %w", current, current+1, consent.ErrOutdatedPolicy)
		}
		if err := s.insertPolicy(ctx, tx, policy); err != nil {
			return err
		}
		_, err = s.log.AppendTx(ctx, tx, ev)
		return err
	})
	if err != nil {
		return fmt.Errorf("publish policy %s v%d: %w", policy.Purpose, policy.Version, err)
	}
	return nil
}

// GetPurpose implements consent.Store.
func (s *Store) GetPurpose(ctx context.Context, id string) (consent.Purpose, error) {
	p, err := scanPurpose(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+purposeCols+` FROM purposes WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		err = consent.ErrUnknownPurpose
	}
	if err != nil {
		return consent.Purpose{}, fmt.Errorf("get purpose %s: %w", id, err)
	}
	return p, nil
}

// ListPurposes implements consent.Store: all purposes by id.
func (s *Store) ListPurposes(ctx context.Context) ([]consent.Purpose, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+purposeCols+` FROM purposes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list purposes: %w", err)
	}
	defer rows.Close()
	var out []consent.Purpose
	for rows.Next() {
		p, err := scanPurpose(rows)
		if err != nil {
			return nil, fmt.Errorf("list purposes: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list purposes: %w", err)
	}
	return out, nil
}

// GetPolicy implements consent.Store.
func (s *Store) GetPolicy(ctx context.Context, purpose string, version int) (consent.Policy, error) {
	p := consent.Policy{Purpose: purpose, Version: version}
	var published int64
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT text, published_at FROM policies WHERE purpose = ? AND version = ?`), purpose, version).
		Scan(&p.Text, &published)
	if errors.Is(err, sql.ErrNoRows) {
		err = consent.ErrNotFound
	}
	if err != nil {
		return consent.Policy{}, fmt.Errorf("get policy %s v%d: %w", purpose, version, err)
	}
	p.PublishedAt = fromMicros(published)
	return p, nil
}

// ---- subjects ----

const subjectCols = `id, blind_index, pseudonym, data_key_id, identifier_enc, created_at, deleted_at`

func scanSubject(row interface{ Scan(...any) error }) (consent.Subject, error) {
	var (
		sub     consent.Subject
		created int64
		deleted sql.NullInt64
	)
	if err := row.Scan(&sub.ID, &sub.BlindIndex, &sub.Pseudonym, &sub.DataKeyID, &sub.IdentifierEnc, &created, &deleted); err != nil {
		return consent.Subject{}, err
	}
	sub.CreatedAt, sub.DeletedAt = fromMicros(created), fromNullMicros(deleted)
	return sub, nil
}

func (s *Store) subject(ctx context.Context, q queryer, where string, arg any) (consent.Subject, error) {
	sub, err := scanSubject(q.QueryRowContext(ctx, s.db.Rebind(`SELECT `+subjectCols+` FROM subjects WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return consent.Subject{}, consent.ErrNotFound
	}
	return sub, err
}

// FindSubject implements consent.Store. A deleted subject is found, with
// DeletedAt set.
func (s *Store) FindSubject(ctx context.Context, blindIndex []byte) (consent.Subject, error) {
	sub, err := s.subject(ctx, s.db, `blind_index = ?`, blindIndex)
	if err != nil {
		return consent.Subject{}, fmt.Errorf("find subject: %w", err)
	}
	return sub, nil
}

// GetSubject implements consent.Store. A deleted subject is found, with
// DeletedAt set.
func (s *Store) GetSubject(ctx context.Context, id string) (consent.Subject, error) {
	sub, err := s.subject(ctx, s.db, `id = ?`, id)
	if err != nil {
		return consent.Subject{}, fmt.Errorf("get subject: %w", err)
	}
	return sub, nil
}

// resolveSubject returns the stored subject that sub names, by id or else
// by blind index, creating it when neither is stored. The row is locked
// against DeleteSubject until the transaction ends. A concurrent
// transaction creating the same subject first makes the insert fail with a
// unique violation: sqldb.ErrRetry, and the next attempt finds its row.
func (s *Store) resolveSubject(ctx context.Context, tx *sql.Tx, sub consent.Subject) (consent.Subject, error) {
	got, err := s.subject(ctx, tx, `id = ?`+s.db.ForShare(), sub.ID)
	if errors.Is(err, consent.ErrNotFound) && len(sub.BlindIndex) > 0 {
		got, err = s.subject(ctx, tx, `blind_index = ?`+s.db.ForShare(), sub.BlindIndex)
	}
	switch {
	case err == nil && got.DeletedAt != nil:
		return consent.Subject{}, consent.ErrSubjectDeleted
	case err == nil:
		return got, nil
	case !errors.Is(err, consent.ErrNotFound):
		return consent.Subject{}, fmt.Errorf("read subject: %w", err)
	}
	switch {
	case len(sub.BlindIndex) == 0:
		return consent.Subject{}, &consent.ValidationError{Field: "subject.blind_index", Reason: "required for a new subject"}
	case sub.Pseudonym == "":
		return consent.Subject{}, &consent.ValidationError{Field: "subject.pseudonym", Reason: "required for a new subject"}
	case sub.DataKeyID == "":
		return consent.Subject{}, &consent.ValidationError{Field: "subject.data_key_id", Reason: "required for a new subject"}
	case sub.DeletedAt != nil:
		return consent.Subject{}, &consent.ValidationError{Field: "subject.deleted_at", Reason: "a new subject cannot be deleted"}
	}
	_, err = tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO subjects (`+subjectCols+`) VALUES (?, ?, ?, ?, ?, ?, NULL)`),
		sub.ID, sub.BlindIndex, sub.Pseudonym, sub.DataKeyID, nullBytes(sub.IdentifierEnc), micros(sub.CreatedAt))
	if sqldb.IsUniqueViolation(err) {
		return consent.Subject{}, fmt.Errorf("%w: create subject: %v", sqldb.ErrRetry, err)
	}
	if err != nil {
		return consent.Subject{}, fmt.Errorf("create subject: %w", err)
	}
	sub.CreatedAt = fromMicros(micros(sub.CreatedAt))
	return sub, nil
}

// DeleteSubject implements consent.Store: ErrNotFound for an unknown
// subject, ErrSubjectDeleted for one deleted before. Active consents are
// withdrawn at at (the returned ids, sorted); active consents already past
// their expiry at at are recorded as expired instead. One audit event, ev,
// records the deletion.
func (s *Store) DeleteSubject(ctx context.Context, subjectID string, at time.Time, ev audit.Event) ([]string, error) {
	var ids []string
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		ids = nil
		// Locks the subject row first: a concurrent Grant (which holds it
		// FOR SHARE) either commits before, and its consent is withdrawn
		// below, or waits and then sees the subject deleted.
		res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE subjects SET identifier_enc = NULL, deleted_at = ? WHERE id = ? AND deleted_at IS NULL`),
			micros(at), subjectID)
		if err != nil {
			return err
		}
		if n, err := rowsAffected(res); err != nil {
			return err
		} else if n == 0 {
			if _, err := s.subject(ctx, tx, `id = ?`, subjectID); err != nil {
				return err
			}
			return consent.ErrSubjectDeleted
		}
		rows, err := tx.QueryContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'withdrawn', withdrawn_at = ?, updated_at = ?
			WHERE subject_id = ? AND status = 'active' AND expires_at > ? RETURNING id, purpose, party`),
			micros(at), micros(at), subjectID, micros(at))
		if err != nil {
			return fmt.Errorf("withdraw consents: %w", err)
		}
		var withdrawn []audit.Event
		for rows.Next() {
			var id, purpose, party string
			if err := rows.Scan(&id, &purpose, &party); err != nil {
				rows.Close()
				return fmt.Errorf("withdraw consents: %w", err)
			}
			ids = append(ids, id)
			// Each withdrawal is an event of its own: the audit log shows
			// when every consent ended, and hosts' revocation streams
			// (which read the log) hear of each.
			withdrawn = append(withdrawn, audit.Event{At: at, Actor: ev.Actor, Action: "consent.withdraw", Subject: ev.Subject, Object: id,
				Details: map[string]string{"purpose": purpose, "party": party, "reason": "subject.delete"}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("withdraw consents: %w", err)
		}
		slices.SortFunc(withdrawn, func(a, b audit.Event) int { return strings.Compare(a.Object, b.Object) })
		for _, w := range withdrawn {
			if _, err := s.log.AppendTx(ctx, tx, w); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'expired', updated_at = ? WHERE subject_id = ? AND status = 'active'`),
			micros(at), subjectID); err != nil {
			return fmt.Errorf("expire consents: %w", err)
		}
		_, err = s.log.AppendTx(ctx, tx, ev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete subject: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// ---- consents ----

const consentCols = `c.id, c.subject_id, s.pseudonym, c.purpose, c.party, c.categories, c.policy_version,
	c.granted_at, c.expires_at, c.status, c.withdrawn_at, c.evidence, c.receipt, c.idempotency_key,
	c.request_hash, c.updated_at, p.policy_version, p.renew_on_new_policy
	FROM consents c JOIN subjects s ON s.id = c.subject_id JOIN purposes p ON p.id = c.purpose`

func scanConsent(row interface{ Scan(...any) error }) (consent.Consent, error) {
	var (
		c                         consent.Consent
		cats, status, evidence    string
		granted, expires, updated int64
		withdrawn                 sql.NullInt64
		key                       sql.NullString
		currentPolicy             int
		renew                     bool
	)
	err := row.Scan(&c.ID, &c.SubjectID, &c.SubjectRef, &c.Purpose, &c.Party, &cats, &c.PolicyVersion,
		&granted, &expires, &status, &withdrawn, &evidence, &c.Receipt, &key,
		&c.RequestHash, &updated, &currentPolicy, &renew)
	if err != nil {
		return consent.Consent{}, err
	}
	if err := json.Unmarshal([]byte(cats), &c.Categories); err != nil {
		return consent.Consent{}, fmt.Errorf("consent %s: decode categories: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(evidence), &c.Evidence); err != nil {
		return consent.Consent{}, fmt.Errorf("consent %s: decode evidence: %w", c.ID, err)
	}
	c.GrantedAt, c.ExpiresAt, c.UpdatedAt = fromMicros(granted), fromMicros(expires), fromMicros(updated)
	c.Status, c.WithdrawnAt, c.IdempotencyKey = consent.Status(status), fromNullMicros(withdrawn), key.String
	c.NeedsRenewal = renew && c.PolicyVersion < currentPolicy
	return c, nil
}

// consent reads the one consent matching where (ErrNotFound).
func (s *Store) consent(ctx context.Context, q queryer, where string, args ...any) (consent.Consent, error) {
	c, err := scanConsent(q.QueryRowContext(ctx, s.db.Rebind(`SELECT `+consentCols+` WHERE `+where), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return consent.Consent{}, consent.ErrNotFound
	}
	return c, err
}

func (s *Store) consents(ctx context.Context, q queryer, where string, args ...any) ([]consent.Consent, error) {
	rows, err := q.QueryContext(ctx, s.db.Rebind(`SELECT `+consentCols+` WHERE `+where), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []consent.Consent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// GetConsent implements consent.Store.
func (s *Store) GetConsent(ctx context.Context, id string) (consent.Consent, error) {
	c, err := s.consent(ctx, s.db, `c.id = ?`, id)
	if err != nil {
		return consent.Consent{}, fmt.Errorf("get consent: %w", err)
	}
	return c, nil
}

// FindByIdempotencyKey implements consent.Store.
func (s *Store) FindByIdempotencyKey(ctx context.Context, key string) (consent.Consent, error) {
	if key == "" {
		return consent.Consent{}, fmt.Errorf("find consent by idempotency key: %w", consent.ErrNotFound)
	}
	c, err := s.consent(ctx, s.db, `c.idempotency_key = ?`, key)
	if err != nil {
		return consent.Consent{}, fmt.Errorf("find consent by idempotency key: %w", err)
	}
	return c, nil
}

// ListConsents implements consent.Store: oldest grant first, none (and no
// error) for an unknown subject.
func (s *Store) ListConsents(ctx context.Context, subjectID string) ([]consent.Consent, error) {
	out, err := s.consents(ctx, s.db, `c.subject_id = ? ORDER BY c.granted_at, c.id`, subjectID)
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", err)
	}
	return out, nil
}

// ActiveConsent implements consent.Store. It returns the consent stored as
// active, which may be past its expiry until the sweep records that: check
// Consent.Usable.
func (s *Store) ActiveConsent(ctx context.Context, subjectID, purpose, party string) (consent.Consent, error) {
	c, err := s.consent(ctx, s.db, `c.subject_id = ? AND c.purpose = ? AND c.party = ? AND c.status = 'active'`, subjectID, purpose, party)
	if err != nil {
		return consent.Consent{}, fmt.Errorf("active consent: %w", err)
	}
	return c, nil
}

func checkGrant(sub consent.Subject, c consent.Consent) error {
	switch {
	case sub.ID == "":
		return &consent.ValidationError{Field: "subject.id", Reason: "must not be empty"}
	case c.ID == "":
		return &consent.ValidationError{Field: "id", Reason: "must not be empty"}
	case c.SubjectID != "" && c.SubjectID != sub.ID:
		return &consent.ValidationError{Field: "subject_id", Reason: "does not name the subject"}
	case c.Status != "" && c.Status != consent.StatusActive:
		return &consent.ValidationError{Field: "status", Reason: "a new consent is active"}
	case c.WithdrawnAt != nil:
		return &consent.ValidationError{Field: "withdrawn_at", Reason: "a new consent is not withdrawn"}
	case !c.ExpiresAt.After(c.GrantedAt):
		return &consent.ValidationError{Field: "expires_at", Reason: "must be after granted_at"}
	}
	return nil
}

// Grant implements consent.Store, in one transaction: the idempotency
// check, the purpose and policy version (ErrUnknownPurpose; a version the
// purpose never had is ErrOutdatedPolicy), the subject (found by id, else by
// blind index — a concurrent grant may have created it — else created;
// ErrSubjectDeleted), the superseded consent (ErrNotFound, ErrNotActive, or
// ErrInvalid when it is not of the same subject, purpose and party), the
// new consent (ErrConsentExists) and ev. When a grant with the same
// idempotency key commits concurrently, the idempotency rule decides, never
// ErrConsentExists.
//
// c is stored as active, with the SubjectID and SubjectRef of the stored
// subject, which is not sub when a concurrent grant created the subject
// first. An active consent of the same (subject, purpose, party) that is
// past its expiry at c.GrantedAt does not block the grant: it is recorded
// as expired, as the sweep would have (without an audit entry of its own:
// its expiry is already a fact, see Consent.EffectiveStatus).
func (s *Store) Grant(ctx context.Context, sub consent.Subject, c consent.Consent, supersede string, ev audit.Event) (consent.Consent, bool, error) {
	if err := checkGrant(sub, c); err != nil {
		return consent.Consent{}, false, fmt.Errorf("grant consent: %w", err)
	}
	cats := c.Categories
	if cats == nil {
		cats = []string{}
	}
	catsJSON, err := json.Marshal(cats)
	if err != nil {
		return consent.Consent{}, false, fmt.Errorf("grant consent: encode categories: %w", err)
	}
	evidence := c.Evidence
	evidence.CollectedAt = evidence.CollectedAt.UTC()
	evidenceJSON, err := json.Marshal(evidence)
	if err != nil {
		return consent.Consent{}, false, fmt.Errorf("grant consent: encode evidence: %w", err)
	}
	updated := c.UpdatedAt
	if updated.IsZero() {
		updated = c.GrantedAt
	}

	row := grantRow{categories: string(catsJSON), evidence: string(evidenceJSON), updated: updated}

	var out consent.Consent
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = consent.Consent{}
		prev, done, err := s.replayed(ctx, tx, c)
		if done {
			out = prev
			return err
		}
		if err != nil {
			return err
		}
		out, err = s.grantTx(ctx, tx, sub, c, supersede, ev, row)
		if errors.Is(err, consent.ErrConsentExists) || errors.Is(err, consent.ErrNotActive) || errors.Is(err, consent.ErrSubjectDeleted) {
			// Each statement sees the latest commits (READ COMMITTED): a
			// grant with the same key that committed after the check above
			// may be what refuses this one. Then it is a replay.
			if prev, done, ierr := s.replayed(ctx, tx, c); done {
				out = prev
				return ierr
			}
		}
		return err
	})
	if errors.Is(err, errReplay) {
		return out, true, nil
	}
	if err != nil {
		return consent.Consent{}, false, fmt.Errorf("grant consent: %w", err)
	}
	return out, false, nil
}

// errReplay ends a Grant transaction (rolling back anything it did) that
// found its request already granted.
var errReplay = errors.New("replay")

// replayed applies the idempotency rule to c: done when a consent with c's
// key is stored, which is returned with errReplay when c's request hash
// matches and ErrIdempotencyConflict otherwise.
func (s *Store) replayed(ctx context.Context, q queryer, c consent.Consent) (consent.Consent, bool, error) {
	if c.IdempotencyKey == "" {
		return consent.Consent{}, false, nil
	}
	prev, err := s.consent(ctx, q, `c.idempotency_key = ?`, c.IdempotencyKey)
	switch {
	case errors.Is(err, consent.ErrNotFound):
		return consent.Consent{}, false, nil
	case err != nil:
		return consent.Consent{}, false, fmt.Errorf("idempotency check: %w", err)
	case !bytes.Equal(prev.RequestHash, c.RequestHash):
		return consent.Consent{}, true, consent.ErrIdempotencyConflict
	}
	return prev, true, errReplay
}

// grantRow is a consent's columns that Grant encodes once, before its
// transaction.
type grantRow struct {
	categories, evidence string
	updated              time.Time
}

// grantTx is Grant after the idempotency check.
func (s *Store) grantTx(ctx context.Context, tx *sql.Tx, sub consent.Subject, c consent.Consent, supersede string, ev audit.Event, row grantRow) (consent.Consent, error) {
	var current int
	err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT policy_version FROM purposes WHERE id = ?`), c.Purpose).Scan(&current)
	if errors.Is(err, sql.ErrNoRows) {
		return consent.Consent{}, consent.ErrUnknownPurpose
	}
	if err != nil {
		return consent.Consent{}, fmt.Errorf("read purpose: %w", err)
	}
	if c.PolicyVersion < 1 || c.PolicyVersion > current {
		return consent.Consent{}, fmt.Errorf("policy version %d, current is %d: %w", c.PolicyVersion, current, consent.ErrOutdatedPolicy)
	}

	stored, err := s.resolveSubject(ctx, tx, sub)
	if err != nil {
		return consent.Consent{}, err
	}
	if supersede != "" {
		if err := s.supersede(ctx, tx, supersede, stored.ID, c, row.updated); err != nil {
			return consent.Consent{}, err
		}
	}
	// A consent still stored as active but past its expiry is expired
	// (Consent.EffectiveStatus); record that so it does not block this one
	// in consents_one_active.
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'expired', updated_at = ?
		WHERE subject_id = ? AND purpose = ? AND party = ? AND status = 'active' AND expires_at <= ?`),
		micros(row.updated), stored.ID, c.Purpose, c.Party, micros(c.GrantedAt)); err != nil {
		return consent.Consent{}, fmt.Errorf("expire stale consent: %w", err)
	}
	var other string
	err = tx.QueryRowContext(ctx, s.db.Rebind(`SELECT id FROM consents WHERE (subject_id = ? AND purpose = ? AND party = ? AND status = 'active') OR id = ?`),
		stored.ID, c.Purpose, c.Party, c.ID).Scan(&other)
	switch {
	case err == nil && other == c.ID:
		return consent.Consent{}, &consent.ValidationError{Field: "id", Reason: "a consent with this id exists"}
	case err == nil:
		return consent.Consent{}, consent.ErrConsentExists
	case !errors.Is(err, sql.ErrNoRows):
		return consent.Consent{}, fmt.Errorf("check active consent: %w", err)
	}

	_, err = tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO consents (id, subject_id, purpose, party, categories, policy_version,
		granted_at, expires_at, status, withdrawn_at, evidence, receipt, idempotency_key, request_hash, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?, ?, ?, ?, ?)`),
		c.ID, stored.ID, c.Purpose, c.Party, row.categories, c.PolicyVersion,
		micros(c.GrantedAt), micros(c.ExpiresAt), row.evidence, c.Receipt,
		nullString(c.IdempotencyKey), nullBytes(c.RequestHash), micros(row.updated))
	if sqldb.IsUniqueViolation(err) {
		// A concurrent grant of the same (subject, purpose, party) or
		// idempotency key won; the next attempt's checks say which.
		return consent.Consent{}, fmt.Errorf("%w: insert consent: %v", sqldb.ErrRetry, err)
	}
	if err != nil {
		return consent.Consent{}, fmt.Errorf("insert consent: %w", err)
	}
	out, err := s.consent(ctx, tx, `c.id = ?`, c.ID)
	if err != nil {
		return consent.Consent{}, fmt.Errorf("read back consent: %w", err)
	}
	if _, err := s.log.AppendTx(ctx, tx, ev); err != nil {
		return consent.Consent{}, err
	}
	return out, nil
}

// supersede marks consent id, which must be the active consent of c's
// subject, purpose and party, superseded.
func (s *Store) supersede(ctx context.Context, tx *sql.Tx, id, subjectID string, c consent.Consent, at time.Time) error {
	res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'superseded', updated_at = ?
		WHERE id = ? AND status = 'active' AND subject_id = ? AND purpose = ? AND party = ?`),
		micros(at), id, subjectID, c.Purpose, c.Party)
	if err != nil {
		return fmt.Errorf("supersede %s: %w", id, err)
	}
	n, err := rowsAffected(res)
	if err != nil || n == 1 {
		return err
	}
	var subj, purpose, party, status string
	err = tx.QueryRowContext(ctx, s.db.Rebind(`SELECT subject_id, purpose, party, status FROM consents WHERE id = ?`), id).
		Scan(&subj, &purpose, &party, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("supersede %s: %w", id, consent.ErrNotFound)
	case err != nil:
		return fmt.Errorf("supersede %s: %w", id, err)
	case subj != subjectID || purpose != c.Purpose || party != c.Party:
		return &consent.ValidationError{Field: "supersede", Reason: "names a consent of another subject, purpose or party"}
	}
	return fmt.Errorf("supersede %s (%s): %w", id, status, consent.ErrNotActive)
}

// Withdraw implements consent.Store. A consent stored as active but past
// its expiry at at is expired, hence ErrNotActive.
func (s *Store) Withdraw(ctx context.Context, id string, at time.Time, ev audit.Event) (consent.Consent, error) {
	var out consent.Consent
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'withdrawn', withdrawn_at = ?, updated_at = ?
			WHERE id = ? AND status = 'active' AND expires_at > ?`),
			micros(at), micros(at), id, micros(at))
		if err != nil {
			return err
		}
		if n, err := rowsAffected(res); err != nil {
			return err
		} else if n == 0 {
			var status string
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT status FROM consents WHERE id = ?`), id).Scan(&status)
			if errors.Is(err, sql.ErrNoRows) {
				return consent.ErrNotFound
			}
			if err != nil {
				return err
			}
			if status == string(consent.StatusActive) {
				status = string(consent.StatusExpired)
			}
			return fmt.Errorf("consent is %s: %w", status, consent.ErrNotActive)
		}
		if out, err = s.consent(ctx, tx, `c.id = ?`, id); err != nil {
			return fmt.Errorf("read back consent: %w", err)
		}
		_, err = s.log.AppendTx(ctx, tx, ev)
		return err
	})
	if err != nil {
		return consent.Consent{}, fmt.Errorf("withdraw consent: %w", err)
	}
	return out, nil
}

// ExpireDue implements consent.Store: the active consents whose expiry is
// at or before now (as Consent.EffectiveStatus has it), earliest expiry
// first, at most limit (which must be positive) of them.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int, event func(consent.Consent) audit.Event) ([]consent.Consent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("expire consents: %w", &consent.ValidationError{Field: "limit", Reason: "must be positive"})
	}
	var out []consent.Consent
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = nil
		// status is checked again outside the subquery: on PostgreSQL a row
		// a concurrent sweep or withdrawal changed meanwhile is re-checked
		// against it and skipped.
		rows, err := tx.QueryContext(ctx, s.db.Rebind(`UPDATE consents SET status = 'expired', updated_at = ?
			WHERE status = 'active' AND expires_at <= ? AND id IN (
				SELECT id FROM consents WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?)
			RETURNING id`),
			micros(now), micros(now), micros(now), limit)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			c, err := s.consent(ctx, tx, `c.id = ?`, id)
			if err != nil {
				return fmt.Errorf("read back consent: %w", err)
			}
			out = append(out, c)
		}
		slices.SortFunc(out, func(a, b consent.Consent) int {
			if d := a.ExpiresAt.Compare(b.ExpiresAt); d != 0 {
				return d
			}
			return strings.Compare(a.ID, b.ID)
		})
		// Audit entries last, after every row lock is held.
		for _, c := range out {
			if _, err := s.log.AppendTx(ctx, tx, event(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire consents: %w", err)
	}
	return out, nil
}

// UsableBlindIndexes implements consent.Store: one query for every subject
// with a usable consent for (party, purpose) at now.
func (s *Store) UsableBlindIndexes(ctx context.Context, party, purpose string, now time.Time) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT s.blind_index
		FROM consents c
		JOIN subjects s ON s.id = c.subject_id
		JOIN purposes p ON p.id = c.purpose
		WHERE c.party = ? AND c.purpose = ? AND c.status = 'active' AND c.expires_at > ?
		  AND s.deleted_at IS NULL
		  AND NOT (p.renew_on_new_policy AND c.policy_version < p.policy_version)`),
		party, purpose, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("usable blind indexes: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var bi []byte
		if err := rows.Scan(&bi); err != nil {
			return nil, fmt.Errorf("usable blind indexes: %w", err)
		}
		out = append(out, bi)
	}
	return out, rows.Err()
}
