-- The log is append-only (see migrations/postgres/events/1002).
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: UPDATE is not allowed on the event log');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: DELETE is not allowed on the event log');
END;

CREATE INDEX events_by_actor ON events (actor_subject, position);
CREATE INDEX events_by_type ON events (event_type, position);
CREATE INDEX events_by_time ON events (recorded_at, position);
