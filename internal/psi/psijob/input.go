package psijob

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// MaxIdentifierBytes bounds one identifier; longer ones count as invalid.
const MaxIdentifierBytes = 1024

// TableReader reads one column of a table of the node's database. Table
// and column are validated identifiers (ValidIdent); rows come in a stable
// order, so a resumed job sees the same element order.
type TableReader interface {
	CheckColumn(ctx context.Context, table, column string) error
	ReadColumn(ctx context.Context, table, column string, fn func(value string) error) error
}

// Inputs reads job inputs.
type Inputs struct {
	Tables TableReader
	// Reserved reports tables that may not be read (the node's own
	// tables: tokens, keys, consents...).
	Reserved func(table string) bool
	// Dir is the directory CSV inputs are read from (psi.input_dir): only
	// regular files below it, reached through no symlink that leaves it.
	// Empty: CSV inputs are refused.
	Dir string
}

// MaxCSVRecordBytes bounds the header and every row of a CSV input.
const MaxCSVRecordBytes = 64 << 10

// openCSV opens a CSV input: an absolute path of a regular file below
// s.Dir. It never follows a symlink out of the directory and never
// blocks on a FIFO or a device.
func (s Inputs) openCSV(path string) (*os.File, error) {
	if s.Dir == "" {
		return nil, invalid("input.kind", "CSV inputs are not available on this node (it has no PSI input directory)")
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("psi input directory: %w", err)
	}
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	if err != nil || !filepath.IsLocal(rel) {
		return nil, invalid("input.path", "must be a file below the node's PSI input directory %s (psi.input_dir)", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, invalid("input.path", "the node's PSI input directory %s cannot be opened: %v", dir, errors.Unwrap(err))
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO without a writer returns at once.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, invalid("input.path", "cannot open %s below the PSI input directory: %v", rel, errors.Unwrap(err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, invalid("input.path", "%s is not a regular file", rel)
	}
	return f, nil
}

// recordLimit fails a read once more than max bytes have passed since the
// last reset: csvColumn resets it at each record, so no record (with the
// read-ahead of the CSV reader's buffer) grows past the bound.
type recordLimit struct {
	r      io.Reader
	n, max int
}

var errRecordTooLong = fmt.Errorf("a CSV header or row is longer than %d bytes", MaxCSVRecordBytes)

func (l *recordLimit) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errRecordTooLong
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// csvRecords reads CSV records of at most MaxCSVRecordBytes.
type csvRecords struct {
	cr  *csv.Reader
	lim *recordLimit
}

func newCSVRecords(r io.Reader) *csvRecords {
	lim := &recordLimit{r: r, max: MaxCSVRecordBytes + 4096} // + the bufio read-ahead
	cr := csv.NewReader(lim)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvRecords{cr: cr, lim: lim}
}

func (c *csvRecords) Read() ([]string, error) {
	rec, err := c.cr.Read()
	c.lim.n = 0
	if errors.Is(err, errRecordTooLong) {
		return nil, errRecordTooLong
	}
	return rec, err
}

// Check validates an input before a job is created: the CSV file exists
// and its header names the column; the table and column are valid
// identifiers, not reserved, and exist.
func (s Inputs) Check(ctx context.Context, in Input) error {
	switch in.Kind {
	case InputCSV:
		if in.Table != "" {
			return invalid("input.table", "not allowed with a CSV input")
		}
		if in.Path == "" || !filepath.IsAbs(in.Path) {
			return invalid("input.path", "must be an absolute path of a CSV file on the node (got %.200q): resolve it against the directory it is relative to, as `fedrisk psi run --input` does", in.Path)
		}
		if in.Column == "" || len(in.Column) > 128 {
			return invalid("input.column", "must name a column of the CSV header (1..128 bytes)")
		}
		f, err := s.openCSV(in.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, _, err := csvColumn(f, in.Column); err != nil {
			return err
		}
		return nil
	case InputTable:
		if in.Path != "" {
			return invalid("input.path", "not allowed with a table input")
		}
		if !ValidIdent(in.Table) {
			return invalid("input.table", "must be a plain identifier (letters, digits, '_', at most 63)")
		}
		if !ValidIdent(in.Column) {
			return invalid("input.column", "must be a plain identifier (letters, digits, '_', at most 63)")
		}
		if s.Reserved != nil && s.Reserved(in.Table) {
			return invalid("input.table", "%s is a table of fedrisk itself and cannot be an input", in.Table)
		}
		if s.Tables == nil {
			return invalid("input.kind", "table inputs are not available on this node")
		}
		if err := s.Tables.CheckColumn(ctx, in.Table, in.Column); err != nil {
			return invalid("input", "%v", err)
		}
		return nil
	}
	return invalid("input.kind", "must be csv or table")
}

// csvColumn reads the header of a CSV stream and returns the reader
// positioned at the first data row and the index of column.
func csvColumn(r io.Reader, column string) (*csvRecords, int, error) {
	cr := newCSVRecords(r)
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, 0, invalid("input.path", "the CSV file is empty: a header row is required")
	}
	if err != nil {
		return nil, 0, invalid("input.path", "CSV header: %v", err)
	}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // byte order mark
		}
		if strings.TrimSpace(h) == column {
			return cr, i, nil
		}
	}
	return nil, 0, invalid("input.column", "the CSV header has no column %q", column)
}

// Read streams the input's identifiers with their 0-based data row index.
func (s Inputs) Read(ctx context.Context, in Input, fn func(row int, id string) error) error {
	switch in.Kind {
	case InputCSV:
		f, err := s.openCSV(in.Path)
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		defer f.Close()
		cr, col, err := csvColumn(f, in.Column)
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		for row := 0; ; row++ {
			if row%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read input: data row %d: %w", row+1, err)
			}
			v := ""
			if col < len(rec) {
				v = rec[col]
			}
			if err := fn(row, v); err != nil {
				return err
			}
		}
	case InputTable:
		if s.Tables == nil || !ValidIdent(in.Table) || !ValidIdent(in.Column) || (s.Reserved != nil && s.Reserved(in.Table)) {
			return fmt.Errorf("read input: %w", invalid("input.table", "not readable"))
		}
		row := 0
		return s.Tables.ReadColumn(ctx, in.Table, in.Column, func(v string) error {
			err := fn(row, v)
			row++
			return err
		})
	}
	return fmt.Errorf("read input: %w", invalid("input.kind", "must be csv or table"))
}

// Elements is a job's set: unique normalised identifiers in input order.
type Elements struct {
	IDs        []string
	Rows       []int // data row of each identifier's first occurrence
	RowsRead   int64
	Duplicates int64
	Invalid    int64
	Excluded   int64
	Digest     []byte // binds a session to this exact list
}

// LoadElements reads, normalises and de-duplicates an input and, when
// filter is set, keeps only the identifiers it admits (filter sees the raw
// identifiers of the unique elements).
func LoadElements(ctx context.Context, src Inputs, in Input, norm psi.Normalization, filter func(ctx context.Context, raw []string) ([]bool, error)) (*Elements, error) {
	e := &Elements{}
	seen := map[string]struct{}{}
	var raw []string
	err := src.Read(ctx, in, func(row int, v string) error {
		e.RowsRead++
		if e.RowsRead > MaxSetSize {
			return fmt.Errorf("%w: input has more than %d rows", ErrInvalid, MaxSetSize)
		}
		if len(v) > MaxIdentifierBytes {
			e.Invalid++
			return nil
		}
		id, err := norm.Apply(v)
		if err != nil || id == "" {
			e.Invalid++
			return nil
		}
		if _, dup := seen[id]; dup {
			e.Duplicates++
			return nil
		}
		seen[id] = struct{}{}
		e.IDs = append(e.IDs, id)
		e.Rows = append(e.Rows, row)
		if filter != nil {
			raw = append(raw, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if filter != nil && len(e.IDs) > 0 {
		keep, err := filter(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("consent filter: %w", err)
		}
		if len(keep) != len(raw) {
			return nil, fmt.Errorf("consent filter: %d answers for %d identifiers", len(keep), len(raw))
		}
		ids, rows := e.IDs[:0], e.Rows[:0]
		for i, ok := range keep {
			if ok {
				ids = append(ids, e.IDs[i])
				rows = append(rows, e.Rows[i])
			} else {
				e.Excluded++
			}
		}
		e.IDs, e.Rows = ids, rows
	}
	e.Digest = digestIDs(e.IDs)
	return e, nil
}

func digestIDs(ids []string) []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, id := range ids {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
		h.Write([]byte(id))
	}
	return h.Sum(nil)
}
