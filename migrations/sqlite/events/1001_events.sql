-- The event log (see migrations/postgres/events for the contract). SQLite has one writer at a
-- time, so positions are commit-ordered by construction.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,
    stream_id       BLOB    NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    actor_subject   TEXT    NOT NULL,
    actor_role      TEXT    NOT NULL,
    request_id      TEXT,
    UNIQUE (stream_id, stream_version)
);

CREATE TABLE accounts (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at     TEXT NOT NULL
);
