-- Schema v5: chunks are counted per sender (the aggregator's per-device quota of held chunk
-- bytes), so one device cannot park unbounded incomplete updates in the database.
CREATE INDEX update_chunk_sender ON update_chunk (sender);
