package features

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// RekeyCSV copies a feature file with the entity column's keys replaced by
// key(old), so that it can be loaded under another key, and returns the copy
// for Store.Load. A host loads its features keyed by each subject's href
// (consent.HostRef of its own party name and the normalised identifier), the
// only key the guest's scoring requests name. A key that key rejects fails
// the copy with its line (never the key); the file's other cells are copied
// unchanged.
func RekeyCSV(src io.Reader, entityColumn string, key func(string) (string, error)) (*bytes.Reader, error) {
	r := csv.NewReader(src)
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, &LoadError{Line: 1, Err: fmt.Errorf("%w: header: %v", ErrInvalidCSV, err)}
	}
	col := -1
	for i, h := range header {
		if h == entityColumn {
			col = i
		}
	}
	if col < 0 {
		return nil, &LoadError{Line: 1, Column: entityColumn, Err: fmt.Errorf("%w: no entity column %q", ErrInvalidCSV, entityColumn)}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(header); err != nil {
		return nil, err
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &LoadError{Line: line, Err: fmt.Errorf("%w: %v", ErrInvalidCSV, err)}
		}
		k, err := key(rec[col])
		if err != nil {
			return nil, &LoadError{Line: line, Column: entityColumn, Err: fmt.Errorf("%w: %v", ErrInvalidEntity, err)}
		}
		rec[col] = k
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}
	return bytes.NewReader(buf.Bytes()), nil
}
