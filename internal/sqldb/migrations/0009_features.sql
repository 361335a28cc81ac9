-- Online feature store: the latest value of every feature of every entity,
-- per feature view, and per view a generation that every load transaction
-- advances (readers compare it with their cached entries). Entity keys are
-- stored as given: in production they are consent pseudonyms or blind
-- indexes, never raw identifiers. Values are canonical text of the
-- feature's type; times are Unix microseconds.

CREATE TABLE feature_views (
    view_name  TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    types      TEXT NOT NULL,  -- JSON {"feature": "float64", ...}: every feature ever loaded
    updated_at BIGINT NOT NULL
);

CREATE TABLE feature_values (
    view_name    TEXT NOT NULL,
    entity_key   TEXT NOT NULL,
    feature_name TEXT NOT NULL,
    value        TEXT NOT NULL,
    event_ts     BIGINT NOT NULL,
    loaded_at    BIGINT NOT NULL,
    PRIMARY KEY (view_name, entity_key, feature_name)
);
