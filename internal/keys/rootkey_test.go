package keys_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/keys"
)

func TestRootKeyFiles(t *testing.T) {
	gen, err := keys.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(gen)
	if err != nil || len(raw) != 32 {
		t.Fatalf("GenerateRootKey = %q: want base64 of 32 bytes", gen)
	}
	if again, _ := keys.GenerateRootKey(); again == gen {
		t.Fatal("GenerateRootKey repeats itself")
	}
	long := bytes.Repeat([]byte{0xAB}, 48)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          []byte // nil: an error containing wantErr
		wantErr       string
	}{
		{name: "generated", content: gen + "\n", mode: 0o600, want: raw},
		{name: "hex", content: hex.EncodeToString(raw), mode: 0o400, want: raw},
		{name: "hex uppercase with spaces", content: "  " + strings.ToUpper(hex.EncodeToString(long)) + "\r\n", mode: 0o600, want: long},
		{name: "base64url unpadded", content: base64.RawURLEncoding.EncodeToString(long), mode: 0o600, want: long},
		{name: "group readable", content: gen, mode: 0o640, wantErr: "chmod 600"},
		{name: "world readable", content: gen, mode: 0o604, wantErr: "group or others"},
		{name: "too short", content: hex.EncodeToString(raw[:31]), mode: 0o600, wantErr: "31 bytes"},
		{name: "garbage", content: "not a key!", mode: 0o600, wantErr: "neither hex nor base64"},
		{name: "empty", content: "", mode: 0o600, wantErr: "0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := keys.LoadRootKeyFile(path)
			if tc.want != nil {
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Fatalf("LoadRootKeyFile = %x, %v; want %x", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadRootKeyFile error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), tc.content) && tc.content != "" {
				t.Errorf("error %q repeats the file's content", err)
			}
		})
	}
	if _, err := keys.LoadRootKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func FuzzParseRootKey(f *testing.F) {
	gen, _ := keys.GenerateRootKey()
	f.Add(gen)
	f.Add(strings.Repeat("ab", 32))
	f.Add(" " + strings.Repeat("A", 43) + "\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		key, err := keys.ParseRootKey(s)
		if err != nil {
			if key != nil || strings.Contains(err.Error(), s) && len(s) > 8 {
				t.Fatalf("failed parse returned %x / leaked input in %q", key, err)
			}
			return
		}
		if len(key) < keys.MinRootKeyLen {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		back, err := keys.ParseRootKey(hex.EncodeToString(key))
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("hex round trip: %x, %v", back, err)
		}
	})
}
