-- How far the outbox relay has published the log to each Kafka topic: every event at or below
-- `position` is acknowledged by the broker. Written only by the leading relay.
CREATE TABLE relay_positions (
    topic     TEXT   PRIMARY KEY,
    position  BIGINT NOT NULL
);
