// Package sqlfeatures is the SQL backend of the online feature store
// (features.Backend) on SQLite and PostgreSQL: one row per (view, entity,
// feature) in feature_values, and per view a generation in feature_views
// that every write transaction advances (migration 0009_features).
//
// A read is one statement — the view's generation LEFT JOIN the entities'
// values — so the generation and the values come from the same snapshot
// and no read transaction is needed (on SQLite a transaction would take
// the write lock). A write locks the view's row first (the generation
// upsert), so concurrent loads of one view queue instead of deadlocking,
// then upserts values in multi-row statements that keep a stored value
// whose event time is later.
package sqlfeatures

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// valuesPerStatement bounds a multi-row upsert (6 parameters each; well
// under SQLite's and PostgreSQL's parameter limits).
const valuesPerStatement = 1000

// arrayValuesPerStatement bounds a PostgreSQL upsert of unnested arrays.
const arrayValuesPerStatement = 20000

const upsertTail = ` ON CONFLICT (view_name, entity_key, feature_name) DO UPDATE
SET value = excluded.value, event_ts = excluded.event_ts, loaded_at = excluded.loaded_at
WHERE excluded.event_ts >= feature_values.event_ts`

// Backend implements features.Backend on a node database.
type Backend struct {
	db        *sqldb.DB
	readOne   string // Read's query for one entity
	state     string
	bumpView  string
	setTypes  string
	upsertMax string // the upsert of valuesPerStatement values
	// upsertArrays is PostgreSQL's upsert of unnested column arrays.
	upsertArrays string
}

var _ features.Backend = (*Backend)(nil)

// New returns the backend over db, which must be migrated.
func New(db *sqldb.DB) *Backend {
	b := &Backend{
		db:      db,
		readOne: db.Rebind(readQuery(1)),
		state:   db.Rebind(`SELECT generation, types, updated_at FROM feature_views WHERE view_name = ?`),
		bumpView: db.Rebind(`INSERT INTO feature_views (view_name, generation, types, updated_at) VALUES (?, 1, '{}', ?)
ON CONFLICT (view_name) DO UPDATE SET generation = feature_views.generation + 1, updated_at = excluded.updated_at
RETURNING generation, types`),
		setTypes: db.Rebind(`UPDATE feature_views SET types = ? WHERE view_name = ?`),
	}
	b.upsertMax = b.upsert(valuesPerStatement)
	b.upsertArrays = `INSERT INTO feature_values (view_name, entity_key, feature_name, value, event_ts, loaded_at)
SELECT $1::text, e, f, v, t, $2::bigint FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[]) AS u(e, f, v, t)` + upsertTail
	return b
}

func readQuery(n int) string {
	var b strings.Builder
	b.WriteString(`SELECT s.generation, v.entity_key, v.feature_name, v.value, v.event_ts
FROM feature_views s LEFT JOIN feature_values v ON v.view_name = s.view_name AND v.entity_key `)
	if n == 1 {
		b.WriteString(`= ?`)
	} else {
		b.WriteString(`IN (?`)
		b.WriteString(strings.Repeat(`, ?`, n-1))
		b.WriteString(`)`)
	}
	b.WriteString(` WHERE s.view_name = ?`)
	return b.String()
}

// Read implements features.Backend.
func (b *Backend) Read(ctx context.Context, view string, entities []string) (map[string][]features.StoredValue, int64, error) {
	if len(entities) == 0 {
		st, err := b.State(ctx, view)
		return nil, st.Generation, err
	}
	q := b.readOne
	if len(entities) > 1 {
		q = b.db.Rebind(readQuery(len(entities)))
	}
	args := make([]any, 0, len(entities)+1)
	for _, e := range entities {
		args = append(args, e)
	}
	args = append(args, view)
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("read features: %w", err)
	}
	defer rows.Close()
	var (
		gen  int64
		out  = make(map[string][]features.StoredValue)
		ent  sql.NullString
		feat sql.NullString
		val  sql.NullString
		ts   sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&gen, &ent, &feat, &val, &ts); err != nil {
			return nil, 0, fmt.Errorf("read features: %w", err)
		}
		if !ent.Valid {
			continue // the view exists, no entity matched
		}
		out[ent.String] = append(out[ent.String], features.StoredValue{
			Feature: feat.String, Value: val.String, EventTime: time.UnixMicro(ts.Int64).UTC(),
		})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read features: %w", err)
	}
	return out, gen, nil
}

// State implements features.Backend.
func (b *Backend) State(ctx context.Context, view string) (features.ViewState, error) {
	var (
		st    features.ViewState
		types string
		upd   int64
	)
	err := b.db.QueryRowContext(ctx, b.state, view).Scan(&st.Generation, &types, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return features.ViewState{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("feature view state: %w", err)
	}
	if st.Types, err = parseTypes(types); err != nil {
		return st, err
	}
	st.UpdatedAt = time.UnixMicro(upd).UTC()
	return st, nil
}

func parseTypes(s string) (map[string]features.ValueType, error) {
	var names map[string]string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return nil, fmt.Errorf("feature view state: bad types column: %w", err)
	}
	out := make(map[string]features.ValueType, len(names))
	for f, n := range names {
		t, err := features.ParseValueType(n)
		if err != nil {
			return nil, fmt.Errorf("feature view state: feature %s: %w", f, err)
		}
		out[f] = t
	}
	return out, nil
}

// Write implements features.Backend.
func (b *Backend) Write(ctx context.Context, batch features.Batch) (features.WriteResult, error) {
	var res features.WriteResult
	err := b.db.InTx(ctx, func(tx *sql.Tx) error {
		res = features.WriteResult{}
		var stored string
		if err := tx.QueryRowContext(ctx, b.bumpView, batch.View, batch.LoadedAt.UnixMicro()).Scan(&res.Generation, &stored); err != nil {
			return fmt.Errorf("advance view generation: %w", err)
		}
		types, err := parseTypes(stored)
		if err != nil {
			return err
		}
		changed := false
		for f, t := range batch.Types {
			old, ok := types[f]
			if ok && old != t {
				return fmt.Errorf("%w: %s:%s was loaded as %s, this load says %s", features.ErrTypeConflict, batch.View, f, old, t)
			}
			if !ok {
				types[f], changed = t, true
			}
		}
		if changed {
			names := make(map[string]string, len(types))
			for f, t := range types {
				names[f] = t.String()
			}
			js, _ := json.Marshal(names)
			if _, err := tx.ExecContext(ctx, b.setTypes, string(js), batch.View); err != nil {
				return fmt.Errorf("record feature types: %w", err)
			}
		}
		if b.db.Dialect == sqldb.Postgres {
			return b.writePostgres(ctx, tx, batch, &res)
		}
		return b.writeValues(ctx, tx, batch, &res)
	})
	if err != nil {
		return features.WriteResult{}, err
	}
	return res, nil
}

// writeValues upserts the batch's values in multi-row statements.
func (b *Backend) writeValues(ctx context.Context, tx *sql.Tx, batch features.Batch, res *features.WriteResult) error {
	loaded := batch.LoadedAt.UnixMicro()
	args := make([]any, 0, 6*valuesPerStatement)
	n := 0
	exec := func() error {
		if n == 0 {
			return nil
		}
		q := b.upsertMax
		if n < valuesPerStatement {
			q = b.upsert(n)
		}
		r, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("write feature values: %w", err)
		}
		done, err := r.RowsAffected()
		if err != nil {
			return fmt.Errorf("write feature values: %w", err)
		}
		res.Written += int(done)
		res.Stale += n - int(done)
		args, n = args[:0], 0
		return nil
	}
	for _, row := range batch.Rows {
		for _, v := range row.Values {
			args = append(args, batch.View, row.Entity, v.Feature, v.Value, v.EventTime.UnixMicro(), loaded)
			if n++; n == valuesPerStatement {
				if err := exec(); err != nil {
					return err
				}
			}
		}
	}
	return exec()
}

// writePostgres upserts the batch's values on PostgreSQL: one array
// parameter per column, unnested, so one statement of six parameters
// carries thousands of values.
func (b *Backend) writePostgres(ctx context.Context, tx *sql.Tx, batch features.Batch, res *features.WriteResult) error {
	var (
		ents, feats, vals []string
		tss               []int64
	)
	exec := func() error {
		if len(ents) == 0 {
			return nil
		}
		r, err := tx.ExecContext(ctx, b.upsertArrays, batch.View, batch.LoadedAt.UnixMicro(), ents, feats, vals, tss)
		if err != nil {
			return fmt.Errorf("write feature values: %w", err)
		}
		done, err := r.RowsAffected()
		if err != nil {
			return fmt.Errorf("write feature values: %w", err)
		}
		res.Written += int(done)
		res.Stale += len(ents) - int(done)
		ents, feats, vals, tss = ents[:0], feats[:0], vals[:0], tss[:0]
		return nil
	}
	for _, row := range batch.Rows {
		for _, v := range row.Values {
			ents, feats, vals, tss = append(ents, row.Entity), append(feats, v.Feature), append(vals, v.Value), append(tss, v.EventTime.UnixMicro())
			if len(ents) == arrayValuesPerStatement {
				if err := exec(); err != nil {
					return err
				}
			}
		}
	}
	return exec()
}

// upsert is the statement writing n values; a stored value with a later
// event time is kept.
func (b *Backend) upsert(n int) string {
	var sb strings.Builder
	sb.Grow(200 + n*20)
	sb.WriteString(`INSERT INTO feature_values (view_name, entity_key, feature_name, value, event_ts, loaded_at) VALUES (?, ?, ?, ?, ?, ?)`)
	for range n - 1 {
		sb.WriteString(`, (?, ?, ?, ?, ?, ?)`)
	}
	sb.WriteString(upsertTail)
	return b.db.Rebind(sb.String())
}
