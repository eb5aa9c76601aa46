-- A stream's state folded up to a version, kept beside the log so a command need not fold the
-- whole stream again. Never the source of truth: any row may be dropped, and one written with
-- another layout (`schema_version`) is ignored and replaced from the log.
CREATE TABLE snapshots (
    stream_id       UUID     PRIMARY KEY,
    version         BIGINT   NOT NULL,
    position        BIGINT   NOT NULL,
    schema_version  INTEGER  NOT NULL,
    state           JSONB    NOT NULL
);
