-- Version 7, SQLite dialect (twin of ../postgres/0007_pseudonyms.sql): pseudonym hit/no-hit.
-- pseudonym_index: this node's own pseudonyms (from `exchange pseudonym import` or an inbound
-- connector), handles normalized (exchange.pseudonyms.normalize); never on the bus.
-- pseudonym_blinds: each entry's keyed hash under each federation pseudonym key in use, so
-- a blinded query is one index probe; rebuilt for a new key, dropped with an expired one.
-- pseudonym_requests: every query and request for details this node received, with what
-- it answered (hit, no_hit, refused) or, for details, pending until a person decides.
-- Times are INTEGER microseconds since the Unix epoch (UTC), as everywhere in this store.

CREATE TABLE pseudonym_index (
    id              INTEGER PRIMARY KEY,
    platform        TEXT    NOT NULL CHECK (platform <> ''),
    handle          TEXT    NOT NULL CHECK (handle <> ''),
    case_reference  TEXT    NOT NULL CHECK (case_reference <> ''),
    contact_unit    TEXT    NOT NULL CHECK (contact_unit <> ''),
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL CHECK (last_seen >= first_seen)
);
CREATE UNIQUE INDEX pseudonym_index_entry ON pseudonym_index (platform, handle, case_reference);

CREATE TABLE pseudonym_blinds (
    key_id          TEXT    NOT NULL,
    blind           BLOB    NOT NULL,
    index_id        INTEGER NOT NULL REFERENCES pseudonym_index (id) ON DELETE CASCADE,
    PRIMARY KEY (key_id, blind, index_id)
) WITHOUT ROWID;

CREATE TABLE pseudonym_requests (
    sender          TEXT    NOT NULL,
    message_id      BLOB    NOT NULL,
    query_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('query', 'details')),
    received_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('hit', 'no_hit', 'refused', 'pending', 'approved', 'denied')),
    reason          TEXT,
    facts           TEXT    NOT NULL,
    index_id        INTEGER,
    decided_at      INTEGER,
    actor           TEXT,
    justification   TEXT,
    PRIMARY KEY (sender, message_id)
);
CREATE INDEX pseudonym_requests_rate ON pseudonym_requests (sender, received_at);
CREATE INDEX pseudonym_requests_pending ON pseudonym_requests (received_at)
    WHERE status = 'pending';

-- The responder's and the query command's reads of the records table: only pseudonym rows
-- are indexed, so polling does not scan a store full of alerts.
CREATE INDEX records_pseudonym_queries ON records (sender, message_id)
    WHERE message_type = 'PseudonymQuery';
CREATE INDEX records_pseudonym_responses ON records (record_key)
    WHERE message_type = 'PseudonymResponse';
