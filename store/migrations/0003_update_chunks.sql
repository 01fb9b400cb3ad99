-- Chunks of split client updates, held until the whole update has been admitted, so that an
-- aggregator killed after acknowledging some chunks to the broker loses none of them. Rows are
-- deleted once the update is stored (or refused), and expired when an update never completes.
CREATE TABLE update_chunk (
    message_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    size_bytes  {{BIGINT}} NOT NULL,
    sha256      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    blob        {{BLOB}} NOT NULL,
    received_at {{DOUBLE}} NOT NULL,
    PRIMARY KEY (message_id, seq)
);
CREATE INDEX update_chunk_received ON update_chunk (received_at);
