-- Node identity and small key/value facts about this node (its party name,
-- when it was first started). Later migrations add each service's tables.
CREATE TABLE node_info (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
