// Package keys holds the consent service's key material: envelope encryption
// of personal data, keyed blind indexes and pseudonyms, and the RSA keys that
// sign consent tokens and receipts.
//
// # Key hierarchy
//
//	root key (ENCRYPTION_KEY or a key file, >= 32 bytes, never stored)
//	├── HKDF-SHA256 "wrap"        → root-wrapping key (AES-256-GCM)
//	│     ├── KEK versions 1, 2, … (random AES-256 keys, stored wrapped)
//	│     │     └── data keys, one per data subject (random AES-256-GCM keys,
//	│     │         stored wrapped by one KEK version)
//	│     └── signing keys' private halves (RSA, PKCS#8, stored sealed)
//	├── HKDF-SHA256 "blind-index" → HMAC-SHA256 key of [Manager.BlindIndex]
//	└── HKDF-SHA256 "pseudonym"   → HMAC-SHA256 key of [Manager.Pseudonym]
//
// Every sealed value is AES-256-GCM with a random 96-bit nonce from
// crypto/rand, laid out as a format byte (1), the nonce, the ciphertext and
// the tag; the format byte is also authenticated. Each sealed key is bound by
// its additional data to where it belongs (the KEK version; the data key's id
// and KEK version; the signing key's kid), so swapping rows in the database
// makes unwrapping fail instead of silently using the wrong key. A data key
// must not seal more than 2^32 messages; with one data key per subject that is
// far away.
//
// The root key does not change here. Changing it means re-wrapping every KEK
// and signing key under a new root-wrapping key and recomputing every blind
// index and pseudonym; that is a separate, offline procedure not implemented
// by this package. A wrong root key against an existing database is refused
// by [New] with [ErrRootKeyMismatch].
//
// # What is hidden from whom
//
// Someone holding a copy of the database (or a backup) without the root key
// learns nothing about encrypted data: every data key is wrapped by a KEK, and
// every KEK by the root-wrapping key. Blind indexes allow equality lookups of
// encrypted identifiers without decrypting them; they reveal which rows share
// a value, never the value, and cannot be brute-forced without the root key.
// Pseudonyms (the `sub` of consent tokens) are a different HMAC of the same
// identifier, so a token holder cannot match them to blind indexes in the
// database, and neither reveals the identifier. Callers that index several
// kinds of value should prefix the value with its kind ("email:…").
//
// [Manager.DestroyDataKey] crypto-shreds a data subject: the wrapped data key
// is erased and every ciphertext under it becomes unreadable, wherever copies
// of the ciphertext live. Unwrapped data keys are not cached, so a data key
// destroyed on one replica is unusable on all of them at once. Only the few
// unwrapped KEKs are kept in memory (a node that did not run a rotation drops
// a retired KEK at its next reload, on the first miss). An erased value may
// survive in the database's free pages, WAL or backups until they are
// vacuumed or expire.
//
// # Rotation
//
// [Manager.RotateKEK] creates KEK version n+1 as active (the old one becomes
// retiring), re-wraps every data key still under an older version in batches,
// each batch one transaction, and then marks the old versions retired and
// erases their material. Data keys themselves and the data they encrypt do
// not change, so rotation is online: Encrypt, Decrypt and NewDataKey keep
// working, and a data key created meanwhile goes to the new version. The
// progress lives in the database, so a rotation interrupted by a crash or a
// cancelled context loses nothing; calling RotateKEK or [Manager.ResumeKEK]
// again finishes it without creating another version. At most one KEK is
// active, and a new version cannot be started while one is retiring.
//
// Signing keys move next → current → retired. [Manager.RotateSigning]
// promotes the next key (already published in the JWKS, so verifiers know it
// before the first token it signs), retires the current one and creates a new
// next key. Retired keys keep their public half, so receipts signed long ago
// still verify, but their private half is erased. The kid is the key's
// RFC 7638 JWK thumbprint.
//
// Everything is the standard library: crypto/hkdf, crypto/aes, crypto/cipher,
// crypto/hmac and crypto/rsa do the work; the JWK thumbprint and JWKS are a
// few lines, which is less than a JOSE dependency would cost. Storage is the
// [Store] interface, implemented over SQL by package sqlkeys. Nothing here
// logs key material or data key ids (which stand for data subjects).
package keys
