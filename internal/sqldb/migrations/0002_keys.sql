-- Key material of the consent service (internal/keys). Wrapped keys are
-- AES-256-GCM sealed, never plaintext. Erased material is set to NULL.

-- Key-encryption keys, versions 1, 2, ... sealed by the root-wrapping key.
-- Exactly one is active. A retired version has no material left.
CREATE TABLE keys_kek (
    version    BIGINT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    wrapped    {{BLOB}},
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    CHECK ((state = 'retired') = (wrapped IS NULL))
);
CREATE UNIQUE INDEX keys_kek_one_active ON keys_kek (state) WHERE state = 'active';

-- Data keys, one per data subject, sealed by a KEK version. Destroying one
-- (crypto-shredding) sets wrapped to NULL and destroyed_at.
CREATE TABLE keys_dek (
    id           TEXT PRIMARY KEY,
    kek_version  BIGINT NOT NULL REFERENCES keys_kek (version),
    wrapped      {{BLOB}},
    created_at   BIGINT NOT NULL,
    destroyed_at BIGINT,
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
CREATE INDEX keys_dek_kek_version ON keys_dek (kek_version);

-- RSA keys signing consent tokens and receipts; kid is the RFC 7638
-- thumbprint. At most one next and one current key. A retired key keeps its
-- public half (PKIX DER) and loses its private half (sealed PKCS#8).
CREATE TABLE keys_signing (
    kid         TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    public_key  {{BLOB}} NOT NULL,
    private_key {{BLOB}},
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT,
    CHECK ((state = 'retired') = (private_key IS NULL))
);
CREATE UNIQUE INDEX keys_signing_one_each ON keys_signing (state) WHERE state <> 'retired';
