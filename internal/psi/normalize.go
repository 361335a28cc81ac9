package psi

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidIdentifier reports an identifier that normalisation rejects.
// Its messages never quote the identifier: they may end up in logs.
var ErrInvalidIdentifier = errors.New("psi: invalid identifier")

// Normalization is how both parties turn raw identifiers into the exact
// bytes that are hashed. It is agreed in the session handshake (compare
// Fingerprint) and applied by each side to its own rows before the
// protocol starts: identifiers that differ after normalisation never match.
type Normalization struct {
	// Trim removes leading and trailing Unicode white space.
	Trim bool
	// CaseFold maps every character to a canonical member of its Unicode
	// simple case-folding orbit (preferring the lower-case one), so that
	// two identifiers normalise alike exactly when strings.EqualFold holds
	// between them. Full case folding (ß → ss) is not applied.
	CaseFold bool
	// Phone, when not empty, is a default country calling code (1–3
	// digits, e.g. "86") and every identifier is a phone number rewritten
	// to E.164: spaces, dashes and parentheses are removed; a leading "00"
	// becomes "+"; a national number (no "+" or "00") loses one leading
	// trunk "0" and gets "+" and the default code; the result must be "+"
	// and 8 to 15 digits, the first not 0. A number whose country code is
	// written without "+" or "00" is read as national. Italian fixed lines
	// keep their leading 0 in E.164, so supply them with "+39". CaseFold
	// does not apply to phone numbers.
	Phone string
}

// Validate checks the settings themselves.
func (n Normalization) Validate() error {
	if n.Phone == "" {
		return nil
	}
	if len(n.Phone) > 3 || n.Phone[0] == '0' || !allDigits(n.Phone) {
		return fmt.Errorf("psi: normalization: default country code %q is not 1-3 digits without a leading 0", n.Phone)
	}
	return nil
}

// Fingerprint is a stable text form of the settings that both parties
// compare before a session: equal fingerprints mean identical
// normalisation. Its "v1" changes if the meaning of a setting changes.
func (n Normalization) Fingerprint() string {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	return fmt.Sprintf("fedrisk-psi-norm-v1;trim=%d;casefold=%d;phone=%s", b(n.Trim), b(n.CaseFold), n.Phone)
}

// Apply normalises one identifier. It rejects invalid UTF-8, identifiers
// that are empty after normalisation and, in phone mode, anything that is
// not a valid number, with errors wrapping ErrInvalidIdentifier.
func (n Normalization) Apply(id string) (string, error) {
	if err := n.Validate(); err != nil {
		return "", err
	}
	if !utf8.ValidString(id) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrInvalidIdentifier)
	}
	if n.Trim {
		id = strings.TrimSpace(id)
	}
	if n.Phone != "" {
		return normalizePhone(id, n.Phone)
	}
	if n.CaseFold {
		id = caseFold(id)
	}
	if id == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidIdentifier)
	}
	return id, nil
}

// normalizePhone implements the Phone setting of Normalization.
func normalizePhone(s, country string) (string, error) {
	var b strings.Builder
	b.Grow(len(s) + len(country) + 1)
	for _, r := range s {
		switch {
		case r == '-' || r == '(' || r == ')' || unicode.IsSpace(r):
		case r == '+' || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		default:
			return "", fmt.Errorf("%w: phone number contains a character other than digits, '+', spaces, dashes and parentheses", ErrInvalidIdentifier)
		}
	}
	t := b.String()
	var digits string
	switch {
	case strings.HasPrefix(t, "+"):
		digits = t[1:]
	case strings.HasPrefix(t, "00"):
		digits = t[2:]
	case t == "":
		return "", fmt.Errorf("%w: empty phone number", ErrInvalidIdentifier)
	default:
		digits = country + strings.TrimPrefix(t, "0")
	}
	if !allDigits(digits) {
		return "", fmt.Errorf("%w: phone number has a '+' after its start", ErrInvalidIdentifier)
	}
	if len(digits) < 8 || len(digits) > 15 {
		return "", fmt.Errorf("%w: phone number has %d digits after the country-code prefix, want 8 to 15", ErrInvalidIdentifier, len(digits))
	}
	if digits[0] == '0' {
		return "", fmt.Errorf("%w: phone number's country code starts with 0", ErrInvalidIdentifier)
	}
	return "+" + digits, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// caseFold replaces every rune by foldRune(rune).
func caseFold(s string) string {
	return strings.Map(foldRune, s)
}

// foldRune returns the canonical member of r's simple case-folding orbit
// (the runes unicode.SimpleFold cycles through, which is what
// strings.EqualFold compares): the lower case of the orbit's smallest rune
// if that is in the orbit (almost always), else the smallest rune.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	lower := unicode.ToLower(least)
	for f := unicode.SimpleFold(least); f != least; f = unicode.SimpleFold(f) {
		if f == lower {
			return lower
		}
	}
	return least
}

// Dedup returns ids without repeats, keeping the first occurrence of each
// and the original order, and the number of entries dropped. Apply the
// Normalization first: duplicates are exact byte matches.
func Dedup(ids []string) (unique []string, dups int) {
	seen := make(map[string]struct{}, len(ids))
	unique = make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; ok {
			dups++
			continue
		}
		seen[id] = struct{}{}
		unique = append(unique, id)
	}
	return unique, dups
}
