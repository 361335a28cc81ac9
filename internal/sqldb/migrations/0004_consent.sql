-- Consent service: purposes with versioned policies, data subjects (only
-- ciphertext and keyed hashes) and consents. Times are Unix microseconds.

CREATE TABLE purposes (
    id                       TEXT PRIMARY KEY,
    description              TEXT NOT NULL,
    policy_version           INTEGER NOT NULL CHECK (policy_version >= 1),
    policy_url               TEXT NOT NULL DEFAULT '',
    renew_on_new_policy      BOOLEAN NOT NULL DEFAULT FALSE,
    default_validity_seconds BIGINT NOT NULL DEFAULT 0,
    created_at               BIGINT NOT NULL
);

CREATE TABLE policies (
    purpose      TEXT NOT NULL REFERENCES purposes (id),
    version      INTEGER NOT NULL CHECK (version >= 1),
    text         TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);

-- A deleted subject keeps its row (deleted_at set, identifier_enc erased,
-- its data key destroyed by the caller), so the blind index still answers
-- "this subject was deleted".
CREATE TABLE subjects (
    id             TEXT PRIMARY KEY,
    blind_index    {{BLOB}} NOT NULL UNIQUE,
    pseudonym      TEXT NOT NULL UNIQUE,
    data_key_id    TEXT NOT NULL,
    identifier_enc {{BLOB}},
    created_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);

CREATE TABLE consents (
    id              TEXT PRIMARY KEY,
    subject_id      TEXT NOT NULL REFERENCES subjects (id),
    purpose         TEXT NOT NULL REFERENCES purposes (id),
    party           TEXT NOT NULL,
    categories      TEXT NOT NULL,  -- JSON array of category names
    policy_version  INTEGER NOT NULL,
    granted_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'withdrawn', 'expired', 'superseded')),
    withdrawn_at    BIGINT,
    evidence        TEXT NOT NULL,  -- JSON consent.Evidence
    receipt         TEXT NOT NULL,  -- signed JWS
    idempotency_key TEXT,           -- NULL when the request had none
    request_hash    {{BLOB}},
    updated_at      BIGINT NOT NULL,
    FOREIGN KEY (purpose, policy_version) REFERENCES policies (purpose, version)
);

-- At most one active consent per (subject, purpose, party), enforced by the
-- database so concurrent grants cannot both win.
CREATE UNIQUE INDEX consents_one_active ON consents (subject_id, purpose, party) WHERE status = 'active';
-- NULL keys (requests without one) do not collide on either engine.
CREATE UNIQUE INDEX consents_idempotency_key ON consents (idempotency_key);
CREATE INDEX consents_subject ON consents (subject_id, granted_at);
CREATE INDEX consents_status_expires ON consents (status, expires_at);
