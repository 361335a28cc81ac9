-- Training service: hetero-LR jobs (guest and host) and each party's
-- per-epoch checkpoints, so a job survives a restart and resumes from its
-- last finished epoch. Times are Unix microseconds. A checkpoint holds the
-- party's own state only (a host's holds its weights, which never leave
-- it); checkpoints are deleted when the job ends.

CREATE TABLE training_jobs (
    id             TEXT PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('guest', 'host')),
    algo           TEXT NOT NULL,
    peer           TEXT NOT NULL,
    peer_job       TEXT NOT NULL DEFAULT '',
    file           TEXT NOT NULL,
    psi_job        TEXT NOT NULL DEFAULT '',
    host_file      TEXT NOT NULL DEFAULT '',
    model_id       TEXT NOT NULL DEFAULT '',
    model_version  TEXT NOT NULL DEFAULT '',
    params         TEXT NOT NULL DEFAULT '',  -- JSON lr.Config (guest)
    epochs         INTEGER NOT NULL DEFAULT 0,
    rows_count     BIGINT NOT NULL DEFAULT 0,
    features       INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL CHECK (status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled')),
    error          TEXT NOT NULL DEFAULT '',
    epoch_stats    TEXT NOT NULL DEFAULT '[]', -- JSON [trainjob.EpochStat]
    test_metrics   TEXT NOT NULL DEFAULT '',   -- JSON lr.Metrics, '' until known
    model_path     TEXT NOT NULL DEFAULT '',
    bytes_sent     BIGINT NOT NULL DEFAULT 0,
    bytes_received BIGINT NOT NULL DEFAULT 0,
    created_by     TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    started_at     BIGINT NOT NULL DEFAULT 0,
    finished_at    BIGINT NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX training_jobs_role_status ON training_jobs (role, status, created_at);
CREATE INDEX training_jobs_created ON training_jobs (created_at);

CREATE TABLE training_checkpoints (
    job_id     TEXT NOT NULL REFERENCES training_jobs (id) ON DELETE CASCADE,
    epoch      INTEGER NOT NULL,
    state      {{BLOB}} NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
