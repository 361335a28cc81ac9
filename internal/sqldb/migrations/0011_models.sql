-- Model registry (internal/serving/registry, registry/sqlregistry): this
-- party's halves of trained models, by model id and version, the stable and
-- canary labels, and every label change. Versions are never deleted; a
-- label only ever points at a registered version. Times are Unix
-- microseconds.

-- One row per model id: the highest version number handed out by
-- NextVersion or registered, and the row promotions lock.
CREATE TABLE models (
    model_id     TEXT PRIMARY KEY,
    last_version BIGINT NOT NULL CHECK (last_version >= 0),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- One row per half this party holds. version is the canonical decimal
-- text of version_num ("1", "2", ...).
CREATE TABLE model_versions (
    model_id      TEXT NOT NULL REFERENCES models (model_id),
    version       TEXT NOT NULL,
    version_num   BIGINT NOT NULL CHECK (version_num > 0),
    role          TEXT NOT NULL CHECK (role IN ('guest', 'host')),
    half          {{BLOB}} NOT NULL,
    digest        TEXT NOT NULL,  -- hex SHA-256 of half
    card          {{BLOB}},       -- JSON model card, optional
    created_at    BIGINT NOT NULL,
    registered_by TEXT NOT NULL,
    PRIMARY KEY (model_id, version, role)
);
CREATE INDEX model_versions_order ON model_versions (model_id, version_num);

-- Where each label of a model points now.
CREATE TABLE model_labels (
    model_id   TEXT NOT NULL REFERENCES models (model_id),
    label      TEXT NOT NULL CHECK (label IN ('stable', 'canary')),
    version    TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model_id, label)
);

-- Every label change, append-only: what rollback walks back through.
-- previous is '' when the label pointed nowhere before.
CREATE TABLE model_label_history (
    id         {{AUTOID}},
    model_id   TEXT NOT NULL REFERENCES models (model_id),
    label      TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    version    TEXT NOT NULL,
    previous   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX model_label_history_label ON model_label_history (model_id, label, id);
