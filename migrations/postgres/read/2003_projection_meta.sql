-- The version of the code and schema that built this read store. A newer build refuses to run
-- on an older read store and says how to rebuild it (`movies replay --projection read-store`).
CREATE TABLE projection_meta (
    projection  TEXT    PRIMARY KEY,
    version     BIGINT  NOT NULL
);
