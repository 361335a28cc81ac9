package features

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValueType is the type of a feature's values.
type ValueType uint8

// The value types a feature view may declare.
const (
	Float64 ValueType = iota + 1
	Int64
	String
	Bool
)

// MaxStringLen bounds a string value, in bytes.
const MaxStringLen = 4096

// String returns the name used in view definitions ("float64", ...).
func (t ValueType) String() string {
	switch t {
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	case String:
		return "string"
	case Bool:
		return "bool"
	}
	return "invalid"
}

// ParseValueType parses a type name of a view definition.
func ParseValueType(s string) (ValueType, error) {
	switch s {
	case "float64":
		return Float64, nil
	case "int64":
		return Int64, nil
	case "string":
		return String, nil
	case "bool":
		return Bool, nil
	}
	return 0, fmt.Errorf("unknown type %q (accepted: float64, int64, string, bool)", s)
}

// Value is one typed feature value. The zero Value has no type.
type Value struct {
	typ ValueType
	f   float64
	i   int64 // Int64, and Bool as 0/1
	s   string
}

// Float64Value returns a float64 value.
func Float64Value(f float64) Value { return Value{typ: Float64, f: f} }

// Int64Value returns an int64 value.
func Int64Value(i int64) Value { return Value{typ: Int64, i: i} }

// StringValue returns a string value.
func StringValue(s string) Value { return Value{typ: String, s: s} }

// BoolValue returns a bool value.
func BoolValue(b bool) Value {
	if b {
		return Value{typ: Bool, i: 1}
	}
	return Value{typ: Bool}
}

// Type returns the value's type.
func (v Value) Type() ValueType { return v.typ }

// Float64 returns a float64 value (0 for other types).
func (v Value) Float64() float64 { return v.f }

// Int64 returns an int64 value (0 for other types).
func (v Value) Int64() int64 {
	if v.typ != Int64 {
		return 0
	}
	return v.i
}

// Str returns a string value ("" for other types).
func (v Value) Str() string { return v.s }

// Bool returns a bool value (false for other types).
func (v Value) Bool() bool { return v.typ == Bool && v.i != 0 }

// AsFloat64 converts a numeric or bool value to float64 (true is 1), the
// form a model takes. Strings and untyped values are not numbers.
func (v Value) AsFloat64() (float64, bool) {
	switch v.typ {
	case Float64:
		return v.f, true
	case Int64, Bool:
		return float64(v.i), true
	}
	return 0, false
}

// Any returns the value as float64, int64, string or bool (nil if untyped).
func (v Value) Any() any {
	switch v.typ {
	case Float64:
		return v.f
	case Int64:
		return v.i
	case String:
		return v.s
	case Bool:
		return v.i != 0
	}
	return nil
}

// String returns the canonical text of the value, the form the stores keep
// and ParseValue reads back exactly (float64 in the shortest form that
// round-trips).
func (v Value) String() string {
	switch v.typ {
	case Float64:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case Int64:
		return strconv.FormatInt(v.i, 10)
	case String:
		return v.s
	case Bool:
		return strconv.FormatBool(v.i != 0)
	}
	return ""
}

// MarshalJSON writes the value as a JSON number, string or boolean.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.typ {
	case Float64:
		if math.IsNaN(v.f) || math.IsInf(v.f, 0) {
			return nil, errors.New("features: float64 value is not finite")
		}
		return []byte(strconv.FormatFloat(v.f, 'g', -1, 64)), nil
	case Int64:
		return []byte(strconv.FormatInt(v.i, 10)), nil
	case Bool:
		return []byte(strconv.FormatBool(v.i != 0)), nil
	case String:
		return json.Marshal(v.s)
	}
	return []byte("null"), nil
}

// ParseValue reads s as a value of type t. Numbers and booleans may be
// surrounded by spaces; floats must be finite (JSON cannot carry NaN or
// infinities); booleans accept true/false, 1/0, t/f in any case; strings
// must be valid UTF-8 without NUL bytes and at most MaxStringLen bytes.
// Errors never quote s: it may be personal data.
func ParseValue(t ValueType, s string) (Value, error) {
	switch t {
	case Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return Value{}, errors.New("not a finite float64 number")
		}
		return Float64Value(f), nil
	case Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, errors.New("not an int64 integer")
		}
		return Int64Value(i), nil
	case Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return Value{}, errors.New("not a bool (true/false, 1/0)")
		}
		return BoolValue(b), nil
	case String:
		if len(s) > MaxStringLen {
			return Value{}, fmt.Errorf("string longer than %d bytes", MaxStringLen)
		}
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return Value{}, errors.New("string is not valid UTF-8 text")
		}
		return StringValue(s), nil
	}
	return Value{}, fmt.Errorf("invalid value type %d", t)
}
