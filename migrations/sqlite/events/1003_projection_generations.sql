-- Which generation of each projection is live. `movies replay` builds generation N+1 beside the
-- live one, then flips this pointer in one transaction; running servers follow it.
CREATE TABLE projection_generations (
    projection  TEXT   PRIMARY KEY,
    generation  INTEGER NOT NULL
);
