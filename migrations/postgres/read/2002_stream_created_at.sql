-- When each stream was created: a restored movie keeps its original creation time even though
-- its row was deleted in between.
ALTER TABLE stream_versions ADD COLUMN created_at TIMESTAMPTZ;
