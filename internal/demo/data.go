package demo

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// The demo gives each party part of the bundled customers so that PSI has
// real work: a customer is the bank's unless bucket 0, the partner's unless
// bucket 1, out of ten buckets drawn from a hash of the id. About 80% of the
// customers are shared.
const buckets = 10

func bucket(id string) int {
	h := sha256.Sum256([]byte("fedrisk-demo/split\x00" + id))
	return int(h[0]) % buckets
}

func keepFor(party, id string) bool {
	switch party {
	case guestParty:
		return bucket(id) != 0
	default:
		return bucket(id) != 1
	}
}

// consentFate is what the demo does about a bank customer's consent:
// most consent, a share never did, a share withdraws after consenting.
type consentFate int

const (
	fateConsent consentFate = iota
	fateMissing
	fateWithdrawn
)

func fateOf(id string, missing, withdrawn float64) consentFate {
	h := sha256.Sum256([]byte("fedrisk-demo/consent\x00" + id))
	u := float64(uint32(h[0])<<24|uint32(h[1])<<16|uint32(h[2])<<8|uint32(h[3])) / (1 << 32)
	switch {
	case u < missing:
		return fateMissing
	case u < missing+withdrawn:
		return fateWithdrawn
	}
	return fateConsent
}

// splitFile copies the first limit data rows (0: all) of the bundled file
// name whose ids party keeps into path, and returns their ids in file order.
func splitFile(bundled fs.FS, name, party, path string, limit int) ([]string, error) {
	src, err := bundled.Open(name)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	r := csv.NewReader(bufio.NewReader(src))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(header) == 0 || header[0] != "id" {
		return nil, fmt.Errorf("%s: the first column must be id", name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	w := csv.NewWriter(f)
	if err := w.Write(header); err != nil {
		f.Close()
		return nil, err
	}
	var ids []string
	for n := 0; limit <= 0 || n < limit; n++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !keepFor(party, rec[0]) {
			continue
		}
		ids = append(ids, rec[0])
		if err := w.Write(rec); err != nil {
			f.Close()
			return nil, err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return ids, os.Rename(tmp, path)
}
