// Package sqlauth stores bearer tokens in the node's SQL database.
package sqlauth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// Store implements auth.Store.
type Store struct{ db *sqldb.DB }

// New returns a Store on db.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// CreateToken implements auth.Store.
func (s *Store) CreateToken(ctx context.Context, t auth.StoredToken) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)`),
		t.ID, t.Name, string(t.Role), t.Hash, t.CreatedAt.UnixMicro())
	return err
}

const cols = `id, name, role, token_hash, created_at, revoked_at`

func scan(row interface{ Scan(...any) error }) (auth.StoredToken, error) {
	var (
		t       auth.StoredToken
		role    string
		created int64
		revoked sql.NullInt64
	)
	if err := row.Scan(&t.ID, &t.Name, &role, &t.Hash, &created, &revoked); err != nil {
		return t, err
	}
	t.Role, t.CreatedAt = auth.Role(role), time.UnixMicro(created).UTC()
	if revoked.Valid {
		at := time.UnixMicro(revoked.Int64).UTC()
		t.RevokedAt = &at
	}
	return t, nil
}

// FindToken implements auth.Store.
func (s *Store) FindToken(ctx context.Context, hash []byte) (auth.StoredToken, error) {
	t, err := scan(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+cols+` FROM api_tokens WHERE token_hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, auth.ErrUnknownToken
	}
	return t, err
}

// ListTokens implements auth.Store.
func (s *Store) ListTokens(ctx context.Context) ([]auth.StoredToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []auth.StoredToken
	for rows.Next() {
		t, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken implements auth.Store.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return auth.ErrUnknownToken
	}
	return nil
}
