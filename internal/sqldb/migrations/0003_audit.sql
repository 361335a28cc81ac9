-- The tamper-evident audit log (internal/audit, internal/audit/sqlaudit).
-- seq is assigned by the log (head + 1) under a lock, never by an identity
-- column, so a removed entry shows as a gap. details is the canonical JSON of
-- a string map; times are Unix microseconds; hashes are 32-byte SHA-256.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    object    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash {{BLOB}} NOT NULL,
    hash      {{BLOB}} NOT NULL
);

-- Data-subject exports list one pseudonym's entries in seq order.
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- Signed statements "entry seq has hash h", one per checkpoint.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      {{BLOB}} NOT NULL,
    at        BIGINT NOT NULL,
    kid       TEXT NOT NULL,
    signature {{BLOB}} NOT NULL
);
