-- The read store (SQLite dialect of migrations/postgres/read): denormalised rows shaped for the query API, indexed for every sort and filter
-- it offers. A projection of the event log: safe to drop and rebuild.
CREATE TABLE movies (
    id            BLOB             PRIMARY KEY,
    name          TEXT             NOT NULL,
    name_key      TEXT             NOT NULL,   -- lower(name): the case-insensitive sort key
    director      TEXT             NOT NULL,
    director_key  TEXT             NOT NULL,   -- lower(director): the filter key
    popularity    REAL             NOT NULL,
    imdb_score    REAL             NOT NULL,
    genres        TEXT             NOT NULL,
    version       INTEGER           NOT NULL,
    created_at    TEXT             NOT NULL,
    updated_at    TEXT             NOT NULL
);
CREATE INDEX movies_by_name ON movies (name_key, id);
CREATE INDEX movies_by_popularity ON movies (popularity, id);
CREATE INDEX movies_by_score ON movies (imdb_score, id);
CREATE INDEX movies_by_director ON movies (director_key, name_key, id);

CREATE TABLE movie_genres (
    movie_id   BLOB NOT NULL REFERENCES movies (id) ON DELETE CASCADE,
    genre_key  TEXT NOT NULL,
    PRIMARY KEY (movie_id, genre_key)
);
CREATE INDEX movie_genres_by_genre ON movie_genres (genre_key, movie_id);

-- Kept by the projector so /genres never scans the catalogue.
CREATE TABLE genre_counts (
    genre_key  TEXT   PRIMARY KEY,
    genre      TEXT   NOT NULL,   -- the spelling first seen
    movies     INTEGER NOT NULL
);

-- Per-stream versions make a replayed or duplicated event a no-op; they outlive deleted rows.
CREATE TABLE stream_versions (
    stream_id  BLOB   PRIMARY KEY,
    version    INTEGER NOT NULL
);

-- Each projection's position in the log, written in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    projection  TEXT   PRIMARY KEY,
    position    INTEGER NOT NULL
);
