package keys

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// GenerateRootKey returns a new random 32-byte root key in standard base64,
// as a development node writes it to its key file (with mode 0600).
func GenerateRootKey() (string, error) {
	return base64.StdEncoding.EncodeToString(randomBytes(32)), nil
}

// ParseRootKey decodes a root key written as hex or base64 (standard or URL
// alphabet, padded or not), surrounding white space ignored. Hex is tried
// first. The key must be at least 32 bytes.
func ParseRootKey(text string) ([]byte, error) {
	s := strings.TrimSpace(text)
	key, err := hex.DecodeString(s)
	if err != nil {
		key = nil
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if key, err = enc.DecodeString(s); err == nil {
				break
			}
		}
	}
	if err != nil {
		return nil, errors.New("keys: root key is neither hex nor base64")
	}
	if len(key) < MinRootKeyLen {
		return nil, fmt.Errorf("keys: root key is %d bytes, need at least %d", len(key), MinRootKeyLen)
	}
	return key, nil
}

// LoadRootKeyFile reads a root key file (see ParseRootKey). A file that the
// group or others may read, write or execute is refused: the root key opens
// every secret of the node.
func LoadRootKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: root key file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys: root key file %s has mode %#o: it must not be accessible to group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: root key file: %w", err)
	}
	defer clear(b)
	key, err := ParseRootKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return key, nil
}
