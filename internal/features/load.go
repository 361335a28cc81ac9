package features

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/cache"
)

// Load limits.
const (
	DefaultBatchSize = 1000
	MaxBatchSize     = 50000
	// MaxClockSkew is how far in the future an event time may be: a value
	// dated later would shadow every load until then.
	MaxClockSkew = 5 * time.Minute
)

// LoadOptions tune a load. Zero values select the defaults.
type LoadOptions struct {
	// BatchSize is the number of rows written per transaction (default
	// DefaultBatchSize, at most MaxBatchSize).
	BatchSize int
	// TimestampColumn overrides the view's event time column. When the
	// header has no such column every value gets the load time.
	TimestampColumn string
	// IgnoreColumns are header columns to skip (a label, say); any other
	// column that is neither the entity, the event time nor a feature of
	// the view is an error.
	IgnoreColumns []string
	// Progress, if set, is called after each committed batch with the rows
	// committed so far and the rows of the file.
	Progress func(done, total int)
}

// LoadReport says what a load did.
type LoadReport struct {
	View            string
	Rows            int      // data rows of the file
	Values          int      // values inserted or replaced
	Stale           int      // values skipped: a value with a later event time was stored
	Empty           int      // empty cells, which leave the stored value as it was
	Batches         int      // transactions committed
	Columns         []string // features the file carries
	TimestampColumn string   // "" when every value got LoadedAt
	LoadedAt        time.Time
	Generation      int64 // the view's generation after the load
	// Invalidated counts the cache entries deleted; InvalidationErrors the
	// deletes that failed (the entries then expire at the next generation
	// check of each reader, see Options.GenerationCheck).
	Invalidated        int
	InvalidationErrors int
}

// Load reads a CSV file into view: a header row naming the entity column,
// feature columns and optionally the event time column, then one row per
// entity. It reads the file twice: first to validate every row, so that a
// file with a bad row changes nothing (the error gives its line and
// column), then to write it in transactions of BatchSize rows, deleting
// the cache entry of every entity a batch wrote once the batch commits.
// Readers see each batch as it commits. If the database fails mid-way the
// committed batches stay, and loading the same file again completes the
// load (writes are idempotent upserts); a file changed between the two
// passes is reported.
//
// Cells: an empty cell leaves the stored value as it was; numbers and
// booleans per ParseValue. Event times: RFC 3339, "2006-01-02 15:04:05"
// (UTC unless it has an offset), a date, or integer Unix seconds; not
// later than now + MaxClockSkew. A value older than the stored one is not
// written (counted as Stale). Two rows of one entity: the later event
// time wins, then the later row.
func (s *Store) Load(ctx context.Context, view string, src io.ReadSeeker, opts LoadOptions) (LoadReport, error) {
	v, ok := s.views.View(view)
	if !ok {
		return LoadReport{}, fmt.Errorf("%w %q", ErrUnknownView, view)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchSize > MaxBatchSize {
		return LoadReport{}, fmt.Errorf("batch size %d is above the limit of %d rows", opts.BatchSize, MaxBatchSize)
	}
	state, err := s.backend.State(ctx, view)
	if err != nil {
		return LoadReport{}, fmt.Errorf("load %s: %w", view, err)
	}
	types := make(map[string]ValueType, len(v.Features))
	for _, f := range v.Features {
		if t, ok := state.Types[f.Name]; ok && t != f.Type {
			return LoadReport{}, fmt.Errorf("%w: %s:%s was loaded as %s and is now defined as %s; load it under a new feature name",
				ErrTypeConflict, view, f.Name, t, f.Type)
		}
		types[f.Name] = f.Type
	}
	rep := LoadReport{View: view, LoadedAt: s.opts.Now().UTC().Truncate(time.Microsecond)}

	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return rep, fmt.Errorf("load %s: %w", view, err)
	}
	// Pass 1: validate everything.
	sum1 := sha256.New()
	sc, err := newScanner(v, io.TeeReader(src, sum1), opts, rep.LoadedAt)
	if err != nil {
		return rep, err
	}
	total := 0
	for {
		if _, err := sc.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return rep, err
		}
		total++
		if total%4096 == 0 && ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	rep.Columns, rep.TimestampColumn = sc.featureNames(), sc.tsName

	// Pass 2: write.
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return rep, fmt.Errorf("load %s: %w", view, err)
	}
	sum2 := sha256.New()
	sc, err = newScanner(v, io.TeeReader(src, sum2), opts, rep.LoadedAt)
	if err != nil {
		return rep, fmt.Errorf("%w (the file changed while loading: nothing was written)", err)
	}
	var (
		batch    []Row
		byEntity = make(map[string]int, opts.BatchSize)
		pending  int // rows in batch
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := s.backend.Write(ctx, Batch{View: view, Types: types, Rows: batch, LoadedAt: rep.LoadedAt})
		if err != nil {
			return fmt.Errorf("load %s: write rows %d..%d: %w (%d rows were committed before; loading the file again completes the load)",
				view, rep.Rows+1, rep.Rows+pending, err, rep.Rows)
		}
		rep.Rows += pending
		rep.Values += res.Written
		rep.Stale += res.Stale
		rep.Generation = res.Generation
		rep.Batches++
		s.observe(view, res.Generation)
		s.invalidate(ctx, view, batch, &rep)
		if opts.Progress != nil {
			opts.Progress(rep.Rows, total)
		}
		batch, pending = batch[:0], 0
		clear(byEntity)
		return nil
	}
	for {
		row, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("%w (the file changed while loading: %d rows were committed)", err, rep.Rows)
		}
		rep.Empty += sc.empty
		pending++
		if i, dup := byEntity[row.Entity]; dup {
			batch[i].Values = mergeValues(batch[i].Values, row.Values)
		} else {
			byEntity[row.Entity] = len(batch)
			batch = append(batch, row)
		}
		if pending >= opts.BatchSize {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("load %s: %w (%d rows were committed)", view, err, rep.Rows)
			}
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	if !bytes.Equal(sum1.Sum(nil), sum2.Sum(nil)) {
		return rep, fmt.Errorf("load %s: the file changed while loading (%d rows were committed): load it again", view, rep.Rows)
	}
	return rep, nil
}

// mergeValues folds b into a: per feature the later event time wins, then b.
func mergeValues(a, b []StoredValue) []StoredValue {
	for _, nv := range b {
		i := slices.IndexFunc(a, func(x StoredValue) bool { return x.Feature == nv.Feature })
		switch {
		case i < 0:
			a = append(a, nv)
		case !nv.EventTime.Before(a[i].EventTime):
			a[i] = nv
		}
	}
	return a
}

// invalidate deletes the cache entries of the rows' entities. The batch
// has committed, so the deletes run even if ctx has just been cancelled.
func (s *Store) invalidate(ctx context.Context, view string, rows []Row, rep *LoadReport) {
	if s.cache == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs := make([]bool, len(rows))
	s.parallel(len(rows), func(i int) {
		if err := s.cache.Delete(ctx, cache.UserFeatures(), CacheKey(view, rows[i].Entity)); err != nil {
			errs[i] = true
			s.warn(0, "feature cache invalidation failed; readers drop the entry at their next generation check", err)
		}
	})
	for _, failed := range errs {
		if failed {
			rep.InvalidationErrors++
		} else {
			rep.Invalidated++
		}
	}
}

// scanner reads and validates the rows of a feature file.
type scanner struct {
	r          *csv.Reader
	entityCol  int
	entityName string
	tsCol      int // -1: no event time column
	tsName     string
	feats      []scanFeature
	loadedAt   time.Time
	latest     time.Time // the latest event time accepted
	empty      int       // empty cells of the last row
}

type scanFeature struct {
	col  int
	name string
	typ  ValueType
}

func newScanner(v *View, src io.Reader, opts LoadOptions, loadedAt time.Time) (*scanner, error) {
	r := csv.NewReader(src)
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, &LoadError{Line: 1, Err: errors.New("the file is empty: want a header row")}
	}
	if err != nil {
		return nil, csvError(err)
	}
	header = slices.Clone(header)
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte order mark from a spreadsheet
	tsName := v.timestampColumn()
	if opts.TimestampColumn != "" {
		tsName = opts.TimestampColumn
	}
	sc := &scanner{r: r, entityCol: -1, entityName: v.Entity, tsCol: -1, loadedAt: loadedAt, latest: loadedAt.Add(MaxClockSkew)}
	seen := make(map[string]bool, len(header))
	var unknown []string
	for col, name := range header {
		if seen[name] {
			return nil, &LoadError{Line: 1, Err: fmt.Errorf("column %q appears twice", name)}
		}
		seen[name] = true
		if f, _, ok := v.Feature(name); ok && !slices.Contains(opts.IgnoreColumns, name) {
			sc.feats = append(sc.feats, scanFeature{col: col, name: name, typ: f.Type})
			continue
		}
		switch {
		case name == v.Entity:
			sc.entityCol = col
		case name == tsName:
			sc.tsCol, sc.tsName = col, name
		case slices.Contains(opts.IgnoreColumns, name):
		default:
			unknown = append(unknown, strconv.Quote(name))
		}
	}
	for _, name := range opts.IgnoreColumns {
		if !seen[name] {
			return nil, &LoadError{Line: 1, Err: fmt.Errorf("ignored column %q is not in the header", name)}
		}
	}
	switch {
	case sc.entityCol < 0:
		return nil, &LoadError{Line: 1, Err: fmt.Errorf("the header lacks the entity column %q of view %s", v.Entity, v.Name)}
	case len(unknown) > 0:
		return nil, &LoadError{Line: 1, Err: fmt.Errorf("column(s) %s are not features of view %s (skip them with --ignore-columns)", strings.Join(unknown, ", "), v.Name)}
	case len(sc.feats) == 0:
		return nil, &LoadError{Line: 1, Err: fmt.Errorf("the header names no feature of view %s", v.Name)}
	}
	return sc, nil
}

func (sc *scanner) featureNames() []string {
	names := make([]string, len(sc.feats))
	for i, f := range sc.feats {
		names[i] = f.name
	}
	return names
}

// next returns the next row, io.EOF at the end, or a *LoadError.
func (sc *scanner) next() (Row, error) {
	rec, err := sc.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		return Row{}, csvError(err)
	}
	line := func(col int) int { l, _ := sc.r.FieldPos(col); return l }
	entity := rec[sc.entityCol]
	if err := ValidateEntity(entity); err != nil {
		return Row{}, &LoadError{Line: line(sc.entityCol), Column: sc.entityName, Err: err}
	}
	at := sc.loadedAt
	if sc.tsCol >= 0 {
		if at, err = parseEventTime(rec[sc.tsCol]); err != nil {
			return Row{}, &LoadError{Line: line(sc.tsCol), Column: sc.tsName, Err: err}
		}
		if at.After(sc.latest) {
			return Row{}, &LoadError{Line: line(sc.tsCol), Column: sc.tsName, Err: fmt.Errorf("event time is in the future (more than %s after the load time)", MaxClockSkew)}
		}
	}
	row := Row{Entity: strings.Clone(entity), Values: make([]StoredValue, 0, len(sc.feats))}
	sc.empty = 0
	for _, f := range sc.feats {
		cell := rec[f.col]
		if cell == "" {
			sc.empty++
			continue
		}
		val, err := ParseValue(f.typ, cell)
		if err != nil {
			return Row{}, &LoadError{Line: line(f.col), Column: f.name, Err: err}
		}
		row.Values = append(row.Values, StoredValue{Feature: f.name, Value: val.String(), EventTime: at})
	}
	return row, nil
}

// csvError turns a csv.ParseError into a LoadError without the csv
// package's quoting of the offending text.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LoadError{Line: pe.Line, Err: pe.Err}
	}
	return fmt.Errorf("read feature file: %w", err)
}

// parseEventTime accepts RFC 3339, "2006-01-02 15:04:05[.fraction][offset]"
// (UTC without an offset), "2006-01-02" and integer Unix seconds, and keeps
// microseconds, the stores' precision.
func parseEventTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty event time")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<36 {
			return time.Time{}, errors.New("unix time out of range")
		}
		return time.Unix(n, 0).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1970 {
				return time.Time{}, errors.New("event time before 1970")
			}
			return t.UTC().Truncate(time.Microsecond), nil
		}
	}
	return time.Time{}, errors.New("not an event time (RFC 3339, \"2006-01-02 15:04:05\", a date or Unix seconds)")
}
