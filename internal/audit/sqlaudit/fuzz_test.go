package sqlaudit

import (
	"maps"
	"testing"

	"github.com/fedrisk/fedrisk/internal/audit"
)

// FuzzDecodeDetails feeds arbitrary text to the decoder of the details
// column, which an attacker with database access controls: it must never
// panic, and whatever it accepts must encode and decode to the same map.
func FuzzDecodeDetails(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b","c":"d"}`, `null`, `[]`, `{"a":1}`, `{"a":"\u0000"}`, `{"a":"b","a":"c"}`, ``, `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := decodeDetails(s)
		if err != nil {
			return
		}
		enc, err := encodeDetails(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeDetails(enc)
		if err != nil || !maps.Equal(again, d) {
			t.Fatalf("%q decoded to %q, re-encoded as %q, decoded to %q, %v", s, d, enc, again, err)
		}
	})
}

// FuzzDetailsRoundTrip checks that the details of every valid event are
// stored exactly: the hash is computed over the event as given, so a lossy
// encoding would make honest entries fail verification.
func FuzzDetailsRoundTrip(f *testing.F) {
	f.Add("purpose", "credit", "note", `<&>"é\`)
	f.Add("a", "", "\u2028", "\ufffd")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		d := map[string]string{k1: v1, k2: v2}
		if (audit.Event{Actor: "a", Action: "b", Details: d}).Validate() != nil {
			return
		}
		enc, err := encodeDetails(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeDetails(enc)
		if err != nil || !maps.Equal(got, d) {
			t.Fatalf("%q stored as %q, read back as %q, %v", d, enc, got, err)
		}
	})
}
