-- PSI "both learn" mode: after the guest has matched, it reveals the host
-- positions it matched and the host stores its own rows of the
-- intersection (in psi_results, like the guest).
--
-- psi_jobs.mode keeps its CHECK of 0006 (SQLite cannot change a CHECK
-- constraint in place, and rebuilding a table others reference is not
-- portable): a both-learn job is stored as mode 'intersection' with
-- reveal_to_host = 1, and psisql maps that pair to psijob.ModeBoth.
-- psi_sessions.mode has no CHECK and stores 'both' as is.

ALTER TABLE psi_jobs ADD COLUMN reveal_to_host INTEGER NOT NULL DEFAULT 0 CHECK (reveal_to_host IN (0, 1));

-- Every reveal batch a host session received: the positions (4-byte
-- big-endian, ascending, in the host's shuffled order, which reveals
-- nothing without the encrypted permutation) and how often it arrived. A
-- replay with other positions is refused. Dropped with the session's
-- batches when the session ends.
CREATE TABLE psi_session_reveals (
    session_id TEXT NOT NULL REFERENCES psi_sessions (id) ON DELETE CASCADE,
    batch      INTEGER NOT NULL,
    positions  {{BLOB}} NOT NULL,
    receipts   INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, batch)
);
