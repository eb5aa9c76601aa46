-- The read store: denormalised rows shaped for the query API, indexed for every sort and filter
-- it offers. A projection of the event log: safe to drop and rebuild.
CREATE TABLE movies (
    id            UUID             PRIMARY KEY,
    name          TEXT             NOT NULL,
    name_key      TEXT             NOT NULL,   -- lower(name): the case-insensitive sort key
    director      TEXT             NOT NULL,
    director_key  TEXT             NOT NULL,   -- lower(director): the filter key
    popularity    DOUBLE PRECISION NOT NULL,
    imdb_score    DOUBLE PRECISION NOT NULL,
    genres        JSONB            NOT NULL,
    version       BIGINT           NOT NULL,
    created_at    TIMESTAMPTZ      NOT NULL,
    updated_at    TIMESTAMPTZ      NOT NULL
);
CREATE INDEX movies_by_name ON movies (name_key, id);
CREATE INDEX movies_by_popularity ON movies (popularity, id);
CREATE INDEX movies_by_score ON movies (imdb_score, id);
CREATE INDEX movies_by_director ON movies (director_key, name_key, id);

CREATE TABLE movie_genres (
    movie_id   UUID NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    genre_key  TEXT NOT NULL,
    PRIMARY KEY (movie_id, genre_key)
);
CREATE INDEX movie_genres_by_genre ON movie_genres (genre_key, movie_id);

-- Kept by the projector so /genres never scans the catalogue.
CREATE TABLE genre_counts (
    genre_key  TEXT   PRIMARY KEY,
    genre      TEXT   NOT NULL,   -- the spelling first seen
    movies     BIGINT NOT NULL
);

-- Per-stream versions make a replayed or duplicated event a no-op; they outlive deleted rows.
CREATE TABLE stream_versions (
    stream_id  UUID   PRIMARY KEY,
    version    BIGINT NOT NULL
);

-- Each projection's position in the log, written in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    projection  TEXT   PRIMARY KEY,
    position    BIGINT NOT NULL
);
