-- Bearer tokens of the client APIs (AUTH_REQUIRED=true). Only the SHA-256
-- of a token is stored; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    token_hash {{BLOB}} NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
