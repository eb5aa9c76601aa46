-- The event log: the only thing commands write, and the outbox the relay publishes from.
-- `position` is assigned under a transaction-scoped advisory lock, so positions are commit-ordered:
-- a reader tailing by position never skips an event that committed late.
CREATE TABLE events (
    position        BIGINT      PRIMARY KEY,
    event_id        UUID        NOT NULL,
    stream_id       UUID        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL,
    payload         JSONB       NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    actor_subject   TEXT        NOT NULL,
    actor_role      TEXT        NOT NULL,
    request_id      TEXT,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- Accounts are configuration of the write side, not movie history: plain rows, not events.
CREATE TABLE accounts (
    username       TEXT        PRIMARY KEY,
    password_hash  TEXT        NOT NULL,
    role           TEXT        NOT NULL CHECK (role IN ('admin', 'user')),
    created_at     TIMESTAMPTZ NOT NULL
);
