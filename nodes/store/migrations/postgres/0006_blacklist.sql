-- Version 6, PostgreSQL dialect (twin of ../sqlite/0006_blacklist.sql).
-- The joint blacklist, materialized from the BlacklistDelta records (nodes.blacklist).
-- Times are BIGINT microseconds since the Unix epoch (UTC) on both dialects, so one set
-- of statements serves SQLite and PostgreSQL. Owner = the list id's first label (fr.csam
-- is FR's); joint = the rest (csam): the joint list the members' lists make up.

-- Each member list's applied version (versions are contiguous per list).
CREATE TABLE bl_lists (
    list_id     TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    joint       TEXT    NOT NULL,
    version     BIGINT  NOT NULL CHECK (version >= 0),
    updated_at  BIGINT  NOT NULL
);

-- Entries with provenance: who listed it (owner), since when (added_at, listed_at), in
-- which version. mark: the last version that confirmed it (a snapshot sweeps the others).
CREATE TABLE bl_entries (
    list_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('URL', 'DOMAIN', 'HASH', 'IP')),
    value       TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL DEFAULT '',
    owner       TEXT    NOT NULL,
    joint       TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    added_at    BIGINT  NOT NULL,
    expires_at  BIGINT,
    version     BIGINT  NOT NULL,
    listed_at   BIGINT  NOT NULL,
    mark        BIGINT  NOT NULL,
    PRIMARY KEY (list_id, kind, value, algorithm)
);
CREATE INDEX bl_entries_joint ON bl_entries (joint, kind, value, algorithm, list_id);

-- Deltas held back by a gap, and snapshot parts waiting for the others (JSON payloads).
CREATE TABLE bl_held (
    list_id      TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    part         INTEGER NOT NULL,
    base_version BIGINT  NOT NULL,
    parts        INTEGER NOT NULL,
    sender       TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    PRIMARY KEY (list_id, kind, version, part)
);

-- How far the materializer has read the stored BlacklistDelta records.
CREATE TABLE bl_cursor (
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset     BIGINT  NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);

-- Repairs this node must ask for (sent_at NULL: not yet published).
CREATE TABLE bl_repairs (
    list_id      TEXT    PRIMARY KEY,
    held_version BIGINT  NOT NULL,
    requested_at BIGINT  NOT NULL,
    sent_at      BIGINT
);

-- Snapshots this node (the owner) owes: asked by a repair request or due on schedule.
CREATE TABLE bl_snapshot_due (
    list_id     TEXT    PRIMARY KEY,
    asked_by    TEXT    NOT NULL,
    asked_at    BIGINT  NOT NULL
);

-- The last version this node published of each list it owns.
CREATE TABLE bl_published (
    list_id       TEXT    PRIMARY KEY,
    version       BIGINT  NOT NULL,
    snapshot_at   BIGINT
);

-- Each export file: its serial grows whenever its content changes.
CREATE TABLE bl_exports (
    name        TEXT    PRIMARY KEY,
    serial      BIGINT  NOT NULL,
    digest      TEXT    NOT NULL,
    versions    TEXT    NOT NULL,
    written_at  BIGINT  NOT NULL
);

-- What each consumer of an export (an ISP, a resolver) last confirmed applying.
CREATE TABLE bl_applied (
    consumer     TEXT    PRIMARY KEY,
    export_name  TEXT    NOT NULL,
    serial       BIGINT  NOT NULL,
    versions     TEXT    NOT NULL,
    confirmed_at BIGINT  NOT NULL
);

-- The materializer reads BlacklistDelta records by (topic, partition, offset).
CREATE INDEX records_blacklist ON records (topic, kafka_partition, kafka_offset)
    WHERE message_type = 'BlacklistDelta';
