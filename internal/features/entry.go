package features

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxEntityLen bounds an entity key, in bytes.
const MaxEntityLen = 256

// ValidateEntity checks an entity key: 1..MaxEntityLen bytes of UTF-8
// without control characters or surrounding white space (a key with a
// stray space would be stored under a name nobody looks up). Keys are
// otherwise kept exactly as given; errors never quote them.
func ValidateEntity(e string) error {
	switch {
	case e == "":
		return fmt.Errorf("%w: empty", ErrInvalidEntity)
	case len(e) > MaxEntityLen:
		return fmt.Errorf("%w: longer than 256 bytes", ErrInvalidEntity)
	case !utf8.ValidString(e):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidEntity)
	}
	first, _ := utf8.DecodeRuneInString(e)
	last, _ := utf8.DecodeLastRuneInString(e)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%w: leading or trailing white space", ErrInvalidEntity)
	}
	for _, r := range e {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: control characters", ErrInvalidEntity)
		}
	}
	return nil
}

// CacheKey is the key (in class user_features) of an entity's cached
// values in a view: the view name and a SHA-256 of view and entity, so
// that cache key listings, MONITOR output and slow logs do not show raw
// subject identifiers. The hash is unkeyed, so it hides nothing from
// someone who can guess identifiers: production keys entities by consent
// pseudonym or blind index anyway (see the package doc).
func CacheKey(view, entity string) string {
	h := sha256.New()
	h.Write([]byte(view))
	h.Write([]byte{0})
	h.Write([]byte(entity))
	var sum [sha256.Size]byte
	return view + ":" + base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0]))
}

// A cache entry holds every stored value of one entity in one view, with
// the view generation it was read at:
//
//	version byte (1) | uvarint generation | uvarint n |
//	n × (uvarint len, feature | varint event time µs | uvarint len, value)
//
// n == 0 caches "no values" (an unknown entity), which a load that
// writes the entity deletes like any other entry.
const entryVersion = 1

var errBadEntry = errors.New("malformed cache entry")

func encodeEntry(gen int64, vals []StoredValue) []byte {
	size := 1 + 2*binary.MaxVarintLen64
	for _, v := range vals {
		size += 3*binary.MaxVarintLen64 + len(v.Feature) + len(v.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(gen))
	b = binary.AppendUvarint(b, uint64(len(vals)))
	for _, v := range vals {
		b = binary.AppendUvarint(b, uint64(len(v.Feature)))
		b = append(b, v.Feature...)
		b = binary.AppendVarint(b, v.EventTime.UnixMicro())
		b = binary.AppendUvarint(b, uint64(len(v.Value)))
		b = append(b, v.Value...)
	}
	return b
}

// decodeEntry reads an entry; anything malformed is an error (the caller
// treats it as a miss and overwrites it).
func decodeEntry(b []byte) (int64, []StoredValue, error) {
	if len(b) < 1 || b[0] != entryVersion {
		return 0, nil, errBadEntry
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return x, true
	}
	str := func() (string, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	gen, ok := uv()
	if !ok || gen > 1<<62 {
		return 0, nil, errBadEntry
	}
	n, ok := uv()
	if !ok || n > MaxFeaturesPerView || n > uint64(len(b)) {
		return 0, nil, errBadEntry
	}
	vals := make([]StoredValue, 0, n)
	for range n {
		f, ok := str()
		if !ok {
			return 0, nil, errBadEntry
		}
		ts, m := binary.Varint(b)
		if m <= 0 {
			return 0, nil, errBadEntry
		}
		b = b[m:]
		v, ok := str()
		if !ok {
			return 0, nil, errBadEntry
		}
		vals = append(vals, StoredValue{Feature: f, Value: v, EventTime: time.UnixMicro(ts).UTC()})
	}
	if len(b) != 0 {
		return 0, nil, errBadEntry
	}
	return int64(gen), vals, nil
}
