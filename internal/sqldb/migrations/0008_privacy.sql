-- Differential-privacy budget ledger (internal/privacy, privacy/sqlledger).
-- Amounts are integer micro-ε; times and window bounds are Unix
-- microseconds. Windows are aligned: window_start = floor(t / length) *
-- length, window_end = window_start + length.

-- One budget policy per purpose: total per window of window_micros.
CREATE TABLE privacy_policies (
    purpose       TEXT PRIMARY KEY,
    window_micros BIGINT NOT NULL CHECK (window_micros > 0),
    total         BIGINT NOT NULL CHECK (total >= 0),
    on_exhausted  TEXT NOT NULL CHECK (on_exhausted IN ('refuse', 'degrade')),
    updated_at    BIGINT NOT NULL
);

-- What one requesting party has spent on one subject (pseudonym) for one
-- purpose in one window. A charge increments spent only while the sum
-- stays within the policy's total, in one conditional statement.
CREATE TABLE privacy_budgets (
    party        TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    spent        BIGINT NOT NULL CHECK (spent >= 0),
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (party, purpose, subject, window_start, window_end)
);
CREATE INDEX privacy_budgets_purpose_window ON privacy_budgets (purpose, window_start, window_end);
CREATE INDEX privacy_budgets_window_end ON privacy_budgets (window_end);

-- Every charge, so that a refund returns exactly its amount, once.
CREATE TABLE privacy_charges (
    id           TEXT PRIMARY KEY,
    party        TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    amount       BIGINT NOT NULL CHECK (amount > 0),
    charged_at   BIGINT NOT NULL,
    refunded_at  BIGINT,
    FOREIGN KEY (party, purpose, subject, window_start, window_end)
        REFERENCES privacy_budgets (party, purpose, subject, window_start, window_end)
);
CREATE INDEX privacy_charges_budget ON privacy_charges (party, purpose, subject, window_start, window_end);
CREATE INDEX privacy_charges_window_end ON privacy_charges (window_end);
