package kkrt

import (
	"crypto/sha256"
	"fmt"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Defaults of Config.
const (
	// DefaultBatchSize is the default number of bins per extension batch
	// and of host elements per tag batch: 16384 bins are 901,120 bytes of
	// rows, 16384 host elements 491,520 bytes of 10-byte tags.
	DefaultBatchSize = 1 << 14
	// DefaultWindow is the default number of batches in flight.
	DefaultWindow = 4
)

// Config is what both parties agree on before a session plus local
// tuning, as psi.Config.
type Config struct {
	// Session is the session id, the same on both sides; it selects the
	// identifier digests and is bound into every message and base OT.
	Session []byte
	// Mode is psi.ModeIntersection or psi.ModeBothLearn; the same on both
	// sides. psi.ModeCardinality is refused with ErrUnsupportedMode.
	Mode psi.Mode
	// Normalization must be the same on both sides; the hellos carry a
	// digest of its fingerprint. Callers pass identifiers already
	// normalised.
	Normalization psi.Normalization
	// BatchSize is the number of elements per message this party sends:
	// bins per extension batch for the guest (rounded up to a multiple of
	// 128), host elements per tag batch for the host; 1..MaxBatchElems, 0
	// means DefaultBatchSize.
	BatchSize int
	// Window is how many batches a Role sends before waiting for an
	// acknowledgement; 0 means DefaultWindow.
	Window int
}

func (c Config) withDefaults(guest bool) (Config, error) {
	if len(c.Session) == 0 {
		return c, fmt.Errorf("kkrt: config: empty session id: %w", psi.ErrMalformed)
	}
	switch c.Mode {
	case psi.ModeIntersection, psi.ModeBothLearn:
	case psi.ModeCardinality:
		return c, fmt.Errorf("kkrt: config: %w: %s (the guest would learn which of its elements matched, see the package documentation)", ErrUnsupportedMode, c.Mode)
	default:
		return c, fmt.Errorf("kkrt: config: unknown %s: %w", c.Mode, psi.ErrMalformed)
	}
	if err := c.Normalization.Validate(); err != nil {
		return c, err
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchElems {
		return c, fmt.Errorf("kkrt: config: batch size %d out of range 1..%d: %w", c.BatchSize, MaxBatchElems, psi.ErrMalformed)
	}
	if guest {
		c.BatchSize = roundBatch(c.BatchSize)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < 1 {
		return c, fmt.Errorf("kkrt: config: window %d below 1: %w", c.Window, psi.ErrMalformed)
	}
	return c, nil
}

func normDigest(n psi.Normalization) [8]byte {
	sum := sha256.Sum256([]byte(n.Fingerprint()))
	var d [8]byte
	copy(d[:], sum[:])
	return d
}
