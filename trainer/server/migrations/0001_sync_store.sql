-- The sync server's store (trainer/src/serve/store.rs). Portable SQL: the same file runs on
-- SQLite and PostgreSQL.

-- One row per accepted upload; the primary key makes a repeated idempotency key a no-op, and
-- the stored counts are the answer a retry gets back.
CREATE TABLE uploads (
    user_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    model_version TEXT NOT NULL,
    -- r̂2 (the fast side's negative memory, eq. 5) as a JSON array of d floats.
    neg_memory TEXT NOT NULL,
    accepted_clicks BIGINT NOT NULL,
    accepted_exposures BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

-- Clicks and exposures of accepted uploads; raw item ids, device timestamps (Unix ms).
CREATE TABLE events (
    user_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('click', 'exposure')),
    item TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key, seq)
);
CREATE INDEX events_by_user_kind_ts ON events (user_id, kind, ts);

-- The latest r̂2 per user, what the feed ranks with.
CREATE TABLE user_state (
    user_id TEXT PRIMARY KEY,
    model_version TEXT NOT NULL,
    neg_memory TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
