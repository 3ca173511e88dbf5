-- Version 5, SQLite dialect (twin of ../postgres/0005_quarantine_bounds_tombstones.sql).
-- The quarantine keeps only the first 4 KiB of what it refused, with the size and SHA-256
-- of the whole (NULL on rows from before); it is pruned by age, so received_at is indexed.
-- Tombstones remember the (sender, message id) of every record retracted or erased, so a
-- re-published copy is never stored or delivered again. A node matches the records it reads
-- back from the bus against its outbox by envelope hash, so that column is indexed.

ALTER TABLE quarantine ADD COLUMN raw_size INTEGER CHECK (raw_size >= 0);
ALTER TABLE quarantine ADD COLUMN raw_sha256 BLOB;
CREATE INDEX quarantine_received_at ON quarantine (received_at);

CREATE TABLE tombstones (
    sender      TEXT    NOT NULL,
    message_id  BLOB    NOT NULL,
    at          INTEGER NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason IN ('withdrawn', 'purged', 'expired')),
    PRIMARY KEY (sender, message_id)
) WITHOUT ROWID;
CREATE INDEX tombstones_message_id ON tombstones (message_id);

CREATE INDEX outbox_envelope_hash ON outbox (envelope_hash) WHERE envelope_hash IS NOT NULL;
