package features

import (
	"errors"
	"fmt"
)

// Sentinel errors. Messages name views, features, columns and line numbers,
// never entity keys or values.
var (
	ErrInvalidView    = errors.New("invalid feature view definition")
	ErrUnknownView    = errors.New("unknown feature view")
	ErrUnknownFeature = errors.New("unknown feature")
	ErrInvalidRef     = errors.New("invalid feature reference")
	ErrInvalidEntity  = errors.New("invalid entity key")
	ErrInvalidCSV     = errors.New("invalid feature file")
	ErrTypeConflict   = errors.New("feature type differs from the stored one")
	// ErrStoredValue reports a stored value that does not parse as its
	// feature's type: the view definition changed since it was loaded.
	ErrStoredValue = errors.New("stored feature value does not match the view definition")
)

// LoadError is a bad row or header of a feature file, with its line.
type LoadError struct {
	Line   int    // 1-based line of the file (the header is line 1)
	Column string // "" when the problem is not one column's
	Err    error
}

func (e *LoadError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d, column %s: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// Unwrap lets errors.Is(err, ErrInvalidCSV) match.
func (e *LoadError) Unwrap() []error { return []error{ErrInvalidCSV, e.Err} }
