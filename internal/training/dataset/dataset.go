// Package dataset is the data plumbing each party of vertical federated
// training does on its own.
//
// It reads the party's CSV, aligns rows on the PSI result, computes the
// deterministic train/validation/test split both parties derive from the
// identifiers without talking, standardises locally, and generates synthetic
// data with a planted logistic model for benchmarks.
//
// A guest table has a label column (y, 1 = default); a host table has none.
// Identifiers are opaque strings; they never leave the party (the split
// hashes them locally).
//
// CSV input is outside input: [ReadCSV] checks the header, the column count
// of every row, that every value is a finite number, that labels are 0 or 1,
// that identifiers are unique and non-empty, and the row and column limits,
// and reports the first offending line.
package dataset

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// Limits of ReadCSV.
const (
	// MaxRows bounds the rows of one table.
	MaxRows = 10_000_000
	// MaxFeatures bounds the feature columns of one table.
	MaxFeatures = 4096
	// MaxIDBytes bounds one identifier.
	MaxIDBytes = 256
)

var (
	// ErrFormat reports a CSV that does not have the expected shape.
	ErrFormat = errors.New("dataset: bad format")
	// ErrMissing reports an identifier asked for that the table lacks.
	ErrMissing = errors.New("dataset: identifier not in table")
)

// Matrix is a dense row-major matrix.
type Matrix struct {
	Rows, Cols int
	Data       []float64
}

// NewMatrix returns a zero rows×cols matrix.
func NewMatrix(rows, cols int) Matrix {
	return Matrix{Rows: rows, Cols: cols, Data: make([]float64, rows*cols)}
}

// Row returns row i (aliasing the matrix).
func (m Matrix) Row(i int) []float64 { return m.Data[i*m.Cols : (i+1)*m.Cols : (i+1)*m.Cols] }

// At returns element (i, j).
func (m Matrix) At(i, j int) float64 { return m.Data[i*m.Cols+j] }

// Clone returns a deep copy.
func (m Matrix) Clone() Matrix {
	return Matrix{Rows: m.Rows, Cols: m.Cols, Data: append([]float64(nil), m.Data...)}
}

// HStack returns [a | b] (same row count).
func HStack(a, b Matrix) Matrix {
	if a.Rows != b.Rows {
		panic(fmt.Sprintf("dataset: HStack of %d and %d rows", a.Rows, b.Rows))
	}
	out := NewMatrix(a.Rows, a.Cols+b.Cols)
	for i := 0; i < a.Rows; i++ {
		copy(out.Data[i*out.Cols:], a.Row(i))
		copy(out.Data[i*out.Cols+a.Cols:], b.Row(i))
	}
	return out
}

// SelectCols returns the columns cols of m, in that order.
func (m Matrix) SelectCols(cols []int) Matrix {
	out := NewMatrix(m.Rows, len(cols))
	for i := 0; i < m.Rows; i++ {
		r := m.Row(i)
		o := out.Row(i)
		for k, j := range cols {
			o[k] = r[j]
		}
	}
	return out
}

// Table is one party's rows: identifiers, optional labels and features.
type Table struct {
	IDs      []string
	Labels   []float64 // nil on a host
	Features []string
	X        Matrix
}

// Len returns the number of rows.
func (t *Table) Len() int { return len(t.IDs) }

// HasLabels reports whether the table carries labels (a guest table).
func (t *Table) HasLabels() bool { return t.Labels != nil }

// Rows returns a new table with the rows idx of t, in that order.
func (t *Table) Rows(idx []int) *Table {
	out := &Table{
		IDs:      make([]string, len(idx)),
		Features: t.Features,
		X:        NewMatrix(len(idx), t.X.Cols),
	}
	if t.Labels != nil {
		out.Labels = make([]float64, len(idx))
	}
	for k, i := range idx {
		out.IDs[k] = t.IDs[i]
		copy(out.X.Row(k), t.X.Row(i))
		if t.Labels != nil {
			out.Labels[k] = t.Labels[i]
		}
	}
	return out
}

// SelectFeatures returns a table with only the feature columns cols.
func (t *Table) SelectFeatures(cols []int) *Table {
	names := make([]string, len(cols))
	for k, j := range cols {
		names[k] = t.Features[j]
	}
	return &Table{IDs: t.IDs, Labels: t.Labels, Features: names, X: t.X.SelectCols(cols)}
}

// Align returns the rows of t in the order of ids (for example the PSI
// result). Every identifier must be in t, once.
func (t *Table) Align(ids []string) (*Table, error) {
	pos := make(map[string]int, len(t.IDs))
	for i, id := range t.IDs {
		pos[id] = i
	}
	idx := make([]int, len(ids))
	seen := make(map[string]bool, len(ids))
	for k, id := range ids {
		i, ok := pos[id]
		if !ok {
			return nil, fmt.Errorf("align: row %d of the id list: %w", k, ErrMissing)
		}
		if seen[id] {
			return nil, fmt.Errorf("align: row %d of the id list repeats an identifier: %w", k, ErrFormat)
		}
		seen[id] = true
		idx[k] = i
	}
	return t.Rows(idx), nil
}

// CommonIDs returns the identifiers present in every table, in the order of
// the first: the alignment of an id join, for tests and tools where both
// tables are at hand (in production the PSI result gives the list).
func CommonIDs(tables ...*Table) []string {
	if len(tables) == 0 {
		return nil
	}
	count := make(map[string]int, tables[0].Len())
	for _, t := range tables[1:] {
		for _, id := range t.IDs {
			count[id]++
		}
	}
	var out []string
	for _, id := range tables[0].IDs {
		if count[id] == len(tables)-1 {
			out = append(out, id)
		}
	}
	return out
}

// ReadFile reads a party's CSV file; see ReadCSV.
func ReadFile(path string, labelled bool) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read dataset: %w", err)
	}
	defer f.Close()
	t, err := ReadCSV(f, labelled)
	if err != nil {
		return nil, fmt.Errorf("read dataset %s: %w", path, err)
	}
	return t, nil
}

// ReadCSV reads a party's table. The header is "id,y,<features...>" when
// labelled (a guest) and "id,<features...>" otherwise (a host); feature
// names are taken from the header. Every later row must have the header's
// column count.
func ReadCSV(r io.Reader, labelled bool) (*Table, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // the header fixes it
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty input: %w", ErrFormat)
		}
		return nil, fmt.Errorf("header: %v: %w", err, ErrFormat)
	}
	first := 1
	if labelled {
		first = 2
	}
	if len(header) <= first {
		want := "id"
		if labelled {
			want = "id, y"
		}
		return nil, fmt.Errorf("header has %d columns, want %s and at least one feature: %w", len(header), want, ErrFormat)
	}
	if len(header)-first > MaxFeatures {
		return nil, fmt.Errorf("%d feature columns, limit %d: %w", len(header)-first, MaxFeatures, ErrFormat)
	}
	if strings.TrimSpace(header[0]) != "id" {
		return nil, fmt.Errorf("first column is %.32q, want id: %w", header[0], ErrFormat)
	}
	if labelled && strings.TrimSpace(header[1]) != "y" {
		return nil, fmt.Errorf("second column is %.32q, want y: %w", header[1], ErrFormat)
	}
	t := &Table{Features: make([]string, 0, len(header)-first)}
	names := map[string]bool{}
	for _, h := range header[first:] {
		h = strings.TrimSpace(h)
		if h == "" || names[h] || len(h) > MaxIDBytes {
			return nil, fmt.Errorf("feature name %.32q is empty, too long or repeated: %w", h, ErrFormat)
		}
		names[h] = true
		t.Features = append(t.Features, h)
	}
	cols := len(t.Features)
	if labelled {
		t.Labels = []float64{}
	}
	seen := map[string]bool{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: %w", line, err, ErrFormat)
		}
		if len(t.IDs) >= MaxRows {
			return nil, fmt.Errorf("more than %d rows: %w", MaxRows, ErrFormat)
		}
		id := strings.TrimSpace(rec[0])
		if id == "" || len(id) > MaxIDBytes {
			return nil, fmt.Errorf("line %d: identifier empty or over %d bytes: %w", line, MaxIDBytes, ErrFormat)
		}
		if seen[id] {
			return nil, fmt.Errorf("line %d: repeated identifier: %w", line, ErrFormat)
		}
		seen[id] = true
		if labelled {
			y, err := parseFloat(rec[1])
			if err != nil || (y != 0 && y != 1) {
				return nil, fmt.Errorf("line %d: label must be 0 or 1: %w", line, ErrFormat)
			}
			t.Labels = append(t.Labels, y)
		}
		for j := 0; j < cols; j++ {
			v, err := parseFloat(rec[first+j])
			if err != nil {
				return nil, fmt.Errorf("line %d column %d: %v: %w", line, first+j+1, err, ErrFormat)
			}
			t.X.Data = append(t.X.Data, v)
		}
		t.IDs = append(t.IDs, id)
	}
	if len(t.IDs) == 0 {
		return nil, fmt.Errorf("no rows: %w", ErrFormat)
	}
	t.X.Rows, t.X.Cols = len(t.IDs), cols
	return t, nil
}

func parseFloat(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, errors.New("not a number")
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errors.New("not a finite number")
	}
	return v, nil
}

// WriteCSV writes t in the format ReadCSV reads.
func WriteCSV(w io.Writer, t *Table) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("id")
	if t.Labels != nil {
		bw.WriteString(",y")
	}
	for _, f := range t.Features {
		bw.WriteString(",")
		bw.WriteString(f)
	}
	bw.WriteString("\n")
	for i, id := range t.IDs {
		bw.WriteString(id)
		if t.Labels != nil {
			bw.WriteString(",")
			bw.WriteString(strconv.FormatFloat(t.Labels[i], 'g', -1, 64))
		}
		for _, v := range t.X.Row(i) {
			bw.WriteString(",")
			bw.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// Part is the part of the split a row belongs to.
type Part uint8

// The parts.
const (
	Train Part = iota
	Validation
	Test
)

func (p Part) String() string {
	switch p {
	case Train:
		return "train"
	case Validation:
		return "validation"
	case Test:
		return "test"
	}
	return fmt.Sprintf("part-%d", uint8(p))
}

// Split assigns each identifier to train, validation or test by a seeded
// hash of the identifier, so every party computes the same split of the
// aligned rows without exchanging anything. The seed is not secret; it is
// part of the training configuration both parties agree on.
type Split struct {
	Seed               string  `json:"seed"`
	TestFraction       float64 `json:"test_fraction"`
	ValidationFraction float64 `json:"validation_fraction"` // a fraction of all rows, taken from the non-test ones
}

// DefaultSplit is the 80/20 split of the reference numbers, with a tenth of
// all rows of the 80% kept for validation (early stopping).
func DefaultSplit() Split {
	return Split{Seed: "fedrisk", TestFraction: 0.2, ValidationFraction: 0.1}
}

// Validate checks the fractions.
func (s Split) Validate() error {
	if s.TestFraction < 0 || s.ValidationFraction < 0 || s.TestFraction+s.ValidationFraction >= 1 ||
		math.IsNaN(s.TestFraction) || math.IsNaN(s.ValidationFraction) {
		return fmt.Errorf("split: fractions test %v and validation %v must be ≥ 0 and leave training rows", s.TestFraction, s.ValidationFraction)
	}
	return nil
}

// Unit maps id to [0, 1): the first 53 bits of
// SHA-256("fedrisk-split" || 0 || seed || 0 || id).
func (s Split) Unit(id string) float64 {
	h := sha256.New()
	h.Write([]byte("fedrisk-split\x00"))
	h.Write([]byte(s.Seed))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	v := binary.BigEndian.Uint64(h.Sum(sum[:0]))
	return float64(v>>11) / (1 << 53)
}

// Assign returns the part of id.
func (s Split) Assign(id string) Part {
	u := s.Unit(id)
	switch {
	case u < s.TestFraction:
		return Test
	case u < s.TestFraction+s.ValidationFraction:
		return Validation
	}
	return Train
}

// Indices returns, for each part, the row positions of ids in it, in order.
func (s Split) Indices(ids []string) (train, val, test []int) {
	for i, id := range ids {
		switch s.Assign(id) {
		case Train:
			train = append(train, i)
		case Validation:
			val = append(val, i)
		default:
			test = append(test, i)
		}
	}
	return train, val, test
}

// Parts is a table split three ways.
type Parts struct {
	Train, Validation, Test *Table
}

// Apply splits t.
func (s Split) Apply(t *Table) Parts {
	tr, va, te := s.Indices(t.IDs)
	return Parts{Train: t.Rows(tr), Validation: t.Rows(va), Test: t.Rows(te)}
}
