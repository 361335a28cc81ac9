package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/metrics"
)

// Sentinel errors.
var (
	ErrUnknownKey         = errors.New("keys: unknown key")
	ErrKeyDestroyed       = errors.New("keys: data key destroyed")
	ErrDecrypt            = errors.New("keys: ciphertext is corrupt, truncated or bound to other data")
	ErrRotationInProgress = errors.New("keys: a KEK rotation is in progress")
	ErrConflict           = errors.New("keys: changed concurrently")
	ErrRootKeyMismatch    = errors.New("keys: root key does not match this database")
)

// MinRootKeyLen is the shortest root key accepted.
const MinRootKeyLen = 32

const (
	defaultRSABits = 2048
	formatV1       = 1   // first byte of everything sealed
	rewrapBatch    = 500 // data keys re-wrapped per transaction
	// signerRefresh is how long Signer trusts its cached current key before
	// asking the database whether another node rotated.
	signerRefresh = 5 * time.Second
	// attempts bounds the retries when another node changed the KEKs
	// between two reads.
	attempts = 3
)

// Options tune a Manager; the zero value is usable.
type Options struct {
	// RSABits is the size of new signing keys: 0 means 2048, less than 2048
	// is refused.
	RSABits int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives life-cycle events, never key material or data key ids
	// (default: discard).
	Logger *slog.Logger
	// Registerer, if set, counts the managers opened in the process
	// (fedrisk_key_managers): one per process, built by its composition
	// root, shares its KEK and signer caches between all services.
	Registerer prometheus.Registerer
}

// Manager owns the key hierarchy described in the package doc. It is safe
// for concurrent use, also by several nodes sharing one database.
type Manager struct {
	store   Store
	now     func() time.Time
	log     *slog.Logger
	rsaBits int

	wrap          cipher.AEAD // root-wrapping key
	blindKey      []byte
	pseudonymKey  []byte
	rotateKEKLock sync.Mutex // one KEK rotation at a time in this process

	kekMu     sync.RWMutex
	keks      map[int]cipher.AEAD // unwrapped KEKs that are not retired
	activeKEK int
	loadMu    sync.Mutex // serialises reloads of keks

	sigMu   sync.Mutex
	signer  *rsa.PrivateKey
	signKid string
	checked time.Time // when signKid was last compared with the database
	pubMu   sync.RWMutex
	pubs    map[string]*rsa.PublicKey // by kid: a kid names one key for ever
}

// New returns a Manager over store. It creates KEK version 1 and the first
// current and next signing keys when the database has none (safely when
// several nodes start together), and checks that root unwraps the existing
// ones (ErrRootKeyMismatch otherwise). root must be at least 32 bytes of
// secret randomness; New does not keep it.
func New(ctx context.Context, store Store, root []byte, opts Options) (*Manager, error) {
	if len(root) < MinRootKeyLen {
		return nil, fmt.Errorf("keys: root key is %d bytes, need at least %d", len(root), MinRootKeyLen)
	}
	switch {
	case opts.RSABits == 0:
		opts.RSABits = defaultRSABits
	case opts.RSABits < defaultRSABits:
		return nil, fmt.Errorf("keys: RSA keys of %d bits are too small, need at least %d", opts.RSABits, defaultRSABits)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		g, err := metrics.Register(opts.Registerer, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedrisk_key_managers",
			Help: "Key managers opened in this process (1: every service shares one, with its key caches).",
		}))
		if err != nil {
			return nil, fmt.Errorf("keys: metrics: %w", err)
		}
		g.Inc()
	}
	m := &Manager{
		store:   store,
		now:     opts.Now,
		log:     opts.Logger.With("component", "keys"),
		rsaBits: opts.RSABits,
		pubs:    map[string]*rsa.PublicKey{},
	}
	wrapKey, err := derive(root, "wrap")
	if err != nil {
		return nil, err
	}
	if m.wrap, err = newAEAD(wrapKey); err != nil {
		return nil, err
	}
	if m.blindKey, err = derive(root, "blind-index"); err != nil {
		return nil, err
	}
	if m.pseudonymKey, err = derive(root, "pseudonym"); err != nil {
		return nil, err
	}
	if err := m.ensureKEK(ctx); err != nil {
		return nil, err
	}
	if err := m.ensureSigningKeys(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// derive returns the 32-byte sub-key of root for label.
func derive(root []byte, label string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, root, nil, "fedrisk/keys/v1/"+label, 32)
	if err != nil {
		return nil, fmt.Errorf("keys: derive %s key: %w", label, err)
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return b
}

// seal encrypts plaintext as formatV1 ‖ nonce ‖ ciphertext ‖ tag, binding it
// to aad and to the format byte.
func seal(a cipher.AEAD, plaintext, aad []byte) []byte {
	out := make([]byte, 1, 1+a.Overhead()+len(plaintext))
	out[0] = formatV1
	return a.Seal(out, nil, plaintext, withFormat(aad))
}

// open reverses seal; every failure is ErrDecrypt.
func open(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrDecrypt)
	}
	if sealed[0] != formatV1 {
		return nil, fmt.Errorf("%w: unknown format %d", ErrDecrypt, sealed[0])
	}
	p, err := a.Open(nil, nil, sealed[1:], withFormat(aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return p, nil
}

func withFormat(aad []byte) []byte {
	return append([]byte{formatV1}, aad...)
}

func kekAAD(version int) []byte {
	return []byte("fedrisk/keys/kek/" + strconv.Itoa(version))
}

func dekAAD(id string, kekVersion int) []byte {
	return []byte("fedrisk/keys/dek/" + id + "/" + strconv.Itoa(kekVersion))
}

// NewDataKey creates a data key wrapped by the active KEK and returns its id
// (22 characters of base64url: 128 random bits).
func (m *Manager) NewDataKey(ctx context.Context) (string, error) {
	dek := randomBytes(32)
	defer clear(dek)
	for try := 1; ; try++ {
		version, kek := m.active()
		id := base64.RawURLEncoding.EncodeToString(randomBytes(16))
		err := m.store.InsertDataKey(ctx, DataKeyRecord{
			ID:         id,
			KEKVersion: version,
			Wrapped:    seal(kek, dek, dekAAD(id, version)),
			CreatedAt:  m.now(),
		})
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrConflict) || try == attempts {
			return "", fmt.Errorf("new data key: %w", err)
		}
		// Another node rotated the KEK: learn the new active version.
		if err := m.loadKEKs(ctx); err != nil {
			return "", fmt.Errorf("new data key: %w", err)
		}
	}
}

// Encrypt seals plaintext with data key id, bound to aad (for example the
// record id and field name: the same aad must be given to Decrypt).
func (m *Manager) Encrypt(ctx context.Context, id string, plaintext, aad []byte) ([]byte, error) {
	dek, err := m.dataKey(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return seal(dek, plaintext, aad), nil
}

// Decrypt opens a ciphertext of Encrypt. It fails with ErrKeyDestroyed
// once the data key is destroyed, ErrUnknownKey for an unknown id and
// ErrDecrypt when the ciphertext was altered or aad differs.
func (m *Manager) Decrypt(ctx context.Context, id string, ciphertext, aad []byte) ([]byte, error) {
	dek, err := m.dataKey(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	p, err := open(dek, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return p, nil
}

// dataKey reads and unwraps a data key. Each call reads the database, so a
// key destroyed by any node is refused at once.
func (m *Manager) dataKey(ctx context.Context, id string) (cipher.AEAD, error) {
	for try := 1; ; try++ {
		rec, err := m.store.DataKey(ctx, id)
		if err != nil {
			return nil, err
		}
		if rec.Wrapped == nil {
			return nil, ErrKeyDestroyed
		}
		kek, err := m.kek(ctx, rec.KEKVersion)
		if errors.Is(err, errKEKGone) && try < attempts {
			continue // retired after we read the row: the row now has a newer version
		}
		if err != nil {
			return nil, err
		}
		dek, err := open(kek, rec.Wrapped, dekAAD(id, rec.KEKVersion))
		if err != nil {
			return nil, fmt.Errorf("unwrap data key: %w", err)
		}
		defer clear(dek)
		return newAEAD(dek)
	}
}

// DestroyDataKey crypto-shreds a data key: its wrapped form is erased, and
// everything encrypted under it can never be decrypted again.
func (m *Manager) DestroyDataKey(ctx context.Context, id string) error {
	if err := m.store.DestroyDataKey(ctx, id, m.now()); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	return nil
}

// BlindIndex returns the 32-byte HMAC-SHA256 of value under the blind-index
// key: the same value gives the same index under the same root key, so an
// encrypted identifier can be looked up by it.
func (m *Manager) BlindIndex(value []byte) []byte {
	h := hmac.New(sha256.New, m.blindKey)
	h.Write(value)
	return h.Sum(nil)
}

// Pseudonym returns the base64url (unpadded) HMAC-SHA256 of value under the
// pseudonym key: a stable stand-in for an identifier (the `sub` of consent
// tokens) that matches neither the identifier nor its blind index.
func (m *Manager) Pseudonym(value []byte) string {
	h := hmac.New(sha256.New, m.pseudonymKey)
	h.Write(value)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
