-- The log is append-only: no role the services use can rewrite history. (A superuser could
-- drop the trigger; operators never run services as one.)
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % is not allowed on the event log', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- The audit queries: by actor, by type, by time, each in log order.
CREATE INDEX events_by_actor ON events (actor_subject, position);
CREATE INDEX events_by_type ON events (event_type, position);
CREATE INDEX events_by_time ON events (recorded_at, position);
