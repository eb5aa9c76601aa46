-- A disabled account cannot sign in, and its tokens stop working on writes.
ALTER TABLE accounts ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
