-- PSI service: jobs (guest and host), the guest's per-batch checkpoints,
-- results, and the host's sessions with the digest of every guest batch
-- received. Times are Unix microseconds. Keys and permutations are stored
-- only encrypted under a data key of internal/keys (key_id), which is
-- destroyed when the session or job no longer needs it.

CREATE TABLE psi_jobs (
    id                TEXT PRIMARY KEY,
    role              TEXT NOT NULL CHECK (role IN ('guest', 'host')),
    peer              TEXT NOT NULL,
    peer_url          TEXT NOT NULL DEFAULT '',
    peer_job          TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    mode              TEXT NOT NULL CHECK (mode IN ('intersection', 'cardinality')),
    purpose           TEXT NOT NULL DEFAULT '',
    input             TEXT NOT NULL,  -- JSON psijob.Input
    normalization     TEXT NOT NULL,  -- JSON psi.Normalization
    batch_size        INTEGER NOT NULL,
    session_id        TEXT NOT NULL DEFAULT '',
    tag_len           INTEGER NOT NULL DEFAULT 0,
    input_digest      {{BLOB}},
    key_id            TEXT NOT NULL DEFAULT '',
    key_enc           {{BLOB}},
    rows_read         BIGINT NOT NULL DEFAULT 0,
    local_count       BIGINT NOT NULL DEFAULT 0,
    peer_count        BIGINT NOT NULL DEFAULT 0,
    duplicates        BIGINT NOT NULL DEFAULT 0,
    invalid           BIGINT NOT NULL DEFAULT 0,
    excluded          BIGINT NOT NULL DEFAULT 0,
    done_items        BIGINT NOT NULL DEFAULT 0,
    total_items       BIGINT NOT NULL DEFAULT 0,
    rate              DOUBLE PRECISION NOT NULL DEFAULT 0,
    intersection_size BIGINT,         -- NULL until done
    error             TEXT NOT NULL DEFAULT '',
    owner             TEXT NOT NULL DEFAULT '',
    lease_until       BIGINT NOT NULL DEFAULT 0,
    created_by        TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    started_at        BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL,
    finished_at       BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX psi_jobs_role_status ON psi_jobs (role, status, created_at);
CREATE INDEX psi_jobs_created ON psi_jobs (created_at);

-- Guest checkpoints: phase 1 holds the host's tags for one guest batch,
-- phase 2 the shuffled tags of one batch (cardinality mode), phase 3 the
-- guest indices matched by one host batch.
CREATE TABLE psi_checkpoints (
    job_id     TEXT NOT NULL REFERENCES psi_jobs (id) ON DELETE CASCADE,
    phase      INTEGER NOT NULL,
    batch      INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    data       {{BLOB}} NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, phase, batch)
);

-- Guest results: chunks of (row index, normalised identifier), the
-- identifiers encrypted under the job's data key.
CREATE TABLE psi_results (
    job_id  TEXT NOT NULL REFERENCES psi_jobs (id) ON DELETE CASCADE,
    chunk   INTEGER NOT NULL,
    rows    {{BLOB}} NOT NULL,
    ids_enc {{BLOB}},
    PRIMARY KEY (job_id, chunk)
);

-- Host sessions: one per guest handshake, bound to the guest's party.
CREATE TABLE psi_sessions (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES psi_jobs (id) ON DELETE CASCADE,
    peer         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'done', 'aborted', 'expired')),
    mode         TEXT NOT NULL,
    guest_count  BIGINT NOT NULL,
    host_count   BIGINT NOT NULL,
    batch_size   INTEGER NOT NULL,
    tag_len      INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL,
    input_digest {{BLOB}},
    key_id       TEXT NOT NULL DEFAULT '',
    key_enc      {{BLOB}},
    perm_enc     {{BLOB}},
    reason       TEXT NOT NULL DEFAULT '',
    code         TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX psi_sessions_status ON psi_sessions (status, last_seen);
CREATE INDEX psi_sessions_job ON psi_sessions (job_id);

-- Every guest batch a host session received: its digest (a replay with
-- other content is refused), how often it arrived, and in cardinality mode
-- the tags the host keeps until it serves them shuffled.
CREATE TABLE psi_session_batches (
    session_id TEXT NOT NULL REFERENCES psi_sessions (id) ON DELETE CASCADE,
    batch      INTEGER NOT NULL,
    digest     {{BLOB}} NOT NULL,
    receipts   INTEGER NOT NULL DEFAULT 1,
    tags       {{BLOB}},
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, batch)
);
