-- Version 2, SQLite dialect (twin of ../postgres/0002_connector_delivery.sql): a durable
-- queue of what the outbound connectors must be told, and one cursor per connector over it.
-- commit_batch appends one event per record it stores ('deliver') and per record a
-- retraction changed ('retract'), in the SAME transaction as the records, so a crash can
-- never lose a delivery. AUTOINCREMENT: a seq is never reused, even after the queue is
-- pruned empty (a plain rowid restarts at max+1, which a cursor may already have passed).
-- records.rowid is not used as the sequence for that reason (and VACUUM may renumber it).

CREATE TABLE connector_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('deliver', 'retract')),
    message_id      BLOB    NOT NULL,
    topic           TEXT    NOT NULL
);

CREATE TABLE connector_cursors (
    connector       TEXT    PRIMARY KEY,
    last_seq        INTEGER NOT NULL CHECK (last_seq >= 0),
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
