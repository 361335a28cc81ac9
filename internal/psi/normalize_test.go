package psi_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func TestNormalizationApply(t *testing.T) {
	trim := psi.Normalization{Trim: true}
	fold := psi.Normalization{Trim: true, CaseFold: true}
	phone := psi.Normalization{Trim: true, Phone: "86"}
	tests := []struct {
		name string
		n    psi.Normalization
		in   string
		want string // "" means an error wrapping ErrInvalidIdentifier
	}{
		{"none keeps everything", psi.Normalization{}, "  Alice ", "  Alice "},
		{"trim", trim, " \t Alice\u00a0\n", "Alice"},
		{"trim keeps inner space", trim, " a b ", "a b"},
		{"empty", trim, "", ""},
		{"only spaces", trim, "   ", ""},
		{"invalid UTF-8", psi.Normalization{}, "a\xffb", ""},
		{"case fold ASCII", fold, "Alice@Example.COM", "alice@example.com"},
		{"case fold Greek", fold, "ΣΊΣΥΦΟΣ", "σίσυφοσ"},
		{"case fold Greek lower", fold, "σίσυφος", "σίσυφοσ"},
		{"case fold Kelvin sign", fold, "\u212a", "k"},
		{"case fold long s", fold, "ſ", "s"},
		{"case fold dotted I stays", fold, "İ", "İ"},
		{"case fold Cyrillic", fold, "ПРИВЕТ", "привет"},
		{"case fold leaves Han", fold, "张伟-13800138000", "张伟-13800138000"},
		{"case fold leaves emoji", fold, "🙂X", "🙂x"},
		{"case fold keeps ß", fold, "Straße", "straße"},
		{"national mobile", phone, "138 0013 8000", "+8613800138000"},
		{"national with dashes", phone, "138-0013-8000", "+8613800138000"},
		{"international +", phone, "+86 (138) 0013-8000", "+8613800138000"},
		{"international 00", phone, "0086 138 0013 8000", "+8613800138000"},
		{"trunk 0 dropped", phone, "(010) 8888-1234", "+861088881234"},
		{"other country", phone, "+44 20 7946 0958", "+442079460958"},
		{"15 digits", phone, "+123456789012345", "+123456789012345"},
		{"8 digits", phone, "+12345678", "+12345678"},
		{"16 digits", phone, "+1234567890123456", ""},
		{"7 digits", phone, "+1234567", ""},
		{"too short national", phone, "12345", ""},
		{"letters", phone, "138-CALL-NOW", ""},
		{"plus inside", phone, "138+0013", ""},
		{"country code 0", phone, "+0123456789", ""},
		{"empty phone", phone, " - ", ""},
		{"full-width digits", phone, "１３８００１３８０００", ""},
		{"bad default code", psi.Normalization{Phone: "8x"}, "13800138000", ""},
		{"default code too long", psi.Normalization{Phone: "8601"}, "13800138000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.n.Apply(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Apply(%q) = %q, want an error", tt.in, got)
				}
				if tt.in != "" && strings.TrimSpace(tt.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
					t.Fatalf("error quotes the identifier: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Apply(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			// Normalising twice changes nothing.
			if again, err := tt.n.Apply(got); err != nil || again != got {
				t.Fatalf("not idempotent: %q → %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizationErrors(t *testing.T) {
	_, err := psi.Normalization{Phone: "86"}.Apply("12")
	if !errors.Is(err, psi.ErrInvalidIdentifier) {
		t.Fatalf("got %v, want ErrInvalidIdentifier", err)
	}
	if err := (psi.Normalization{Phone: "086"}).Validate(); err == nil {
		t.Fatal("country code with a leading 0 accepted")
	}
	if err := (psi.Normalization{Phone: "1"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	n := psi.Normalization{Trim: true, CaseFold: false, Phone: "86"}
	if got, want := n.Fingerprint(), "fedrisk-psi-norm-v1;trim=1;casefold=0;phone=86"; got != want {
		t.Fatalf("Fingerprint() = %q, want %q (it is a contract between parties)", got, want)
	}
	all := []psi.Normalization{{}, {Trim: true}, {CaseFold: true}, {Trim: true, CaseFold: true}, {Phone: "86"}, {Phone: "1"}, {Trim: true, Phone: "86"}}
	seen := map[string]bool{}
	for _, n := range all {
		fp := n.Fingerprint()
		if seen[fp] {
			t.Fatalf("two settings share fingerprint %q", fp)
		}
		seen[fp] = true
	}
}

func TestDedup(t *testing.T) {
	unique, dups := psi.Dedup([]string{"b", "a", "b", "c", "a", "a", ""})
	if want := []string{"b", "a", "c", ""}; !slices.Equal(unique, want) || dups != 3 {
		t.Fatalf("Dedup = %q, %d; want %q, 3", unique, dups, want)
	}
	unique, dups = psi.Dedup(nil)
	if len(unique) != 0 || dups != 0 {
		t.Fatalf("Dedup(nil) = %q, %d", unique, dups)
	}
}
