-- Version 1 of the node store, SQLite dialect (see ../postgres/0001_initial.sql for the twin).
-- Times are INTEGER microseconds since the Unix epoch (UTC); ids are 16-byte BLOBs;
-- JSON is TEXT. Insert speed matters: records carry only the indexes queries need.
-- records: an ordinary rowid table (rows are ~1 KB, too large for WITHOUT ROWID to pay)
-- with a UNIQUE index on the message id. Message ids are UUIDv7 (time-ordered), so that
-- index grows at its right edge instead of splitting random pages.

CREATE TABLE records (
    message_id      BLOB    NOT NULL,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    sender          TEXT    NOT NULL,
    message_type    TEXT    NOT NULL,
    record_key      TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    category        TEXT,
    tlp             TEXT    NOT NULL,
    handling_code   TEXT    NOT NULL,
    recipients      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    envelope_hash   BLOB    NOT NULL,
    expires_at      INTEGER,
    state           TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'withdrawn')),
    withdrawn_at    INTEGER,
    retraction_id   BLOB
);
CREATE UNIQUE INDEX records_message_id ON records (message_id);
-- Retention scans: expiry times grow with arrival time, so this index also appends at its end.
CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE consumer_offsets (
    group_id        TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset     INTEGER NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (group_id, topic, kafka_partition)
) WITHOUT ROWID;

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset    INTEGER NOT NULL CHECK (kafka_offset >= 0),
    reason          TEXT    NOT NULL CHECK (reason <> ''),
    detail          TEXT    NOT NULL,
    raw             BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    message_id      BLOB,
    sender          TEXT
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    topic           TEXT    NOT NULL,
    record_key      TEXT    NOT NULL,
    message_type    TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    handling        TEXT    NOT NULL,
    recipients      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'signed', 'sent')),
    message_id      BLOB,
    sequence        INTEGER,
    value           BLOB,
    envelope_hash   BLOB,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    sent_at         INTEGER
);
-- A sequence number is never assigned twice on a topic (NULL while pending).
CREATE UNIQUE INDEX outbox_topic_sequence ON outbox (topic, sequence);
-- The publisher's work queue: only unsent items are indexed.
CREATE INDEX outbox_unsent ON outbox (status, id) WHERE status <> 'sent';

CREATE TABLE chain_heads (
    topic           TEXT    PRIMARY KEY,
    sequence        INTEGER NOT NULL CHECK (sequence >= 1),
    envelope_hash   BLOB
) WITHOUT ROWID;

CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    action          TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    justification   TEXT    NOT NULL,
    recipients      TEXT    NOT NULL,
    subject         TEXT,
    details         TEXT    NOT NULL,
    previous_hash   BLOB    NOT NULL,
    hash            BLOB    NOT NULL
);

CREATE TABLE node_status (
    key             TEXT    PRIMARY KEY,
    value           TEXT    NOT NULL
) WITHOUT ROWID;
