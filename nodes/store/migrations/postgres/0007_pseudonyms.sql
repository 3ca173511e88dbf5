-- Version 7, PostgreSQL dialect (twin of ../sqlite/0007_pseudonyms.sql): pseudonym
-- hit/no-hit. See the SQLite twin for what each table holds.

CREATE TABLE pseudonym_index (
    id              bigserial   PRIMARY KEY,
    platform        text        NOT NULL CHECK (platform <> ''),
    handle          text        NOT NULL CHECK (handle <> ''),
    case_reference  text        NOT NULL CHECK (case_reference <> ''),
    contact_unit    text        NOT NULL CHECK (contact_unit <> ''),
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL CHECK (last_seen >= first_seen)
);
CREATE UNIQUE INDEX pseudonym_index_entry ON pseudonym_index (platform, handle, case_reference);

CREATE TABLE pseudonym_blinds (
    key_id          text        NOT NULL,
    blind           bytea       NOT NULL,
    index_id        bigint      NOT NULL REFERENCES pseudonym_index (id) ON DELETE CASCADE,
    PRIMARY KEY (key_id, blind, index_id)
);

CREATE TABLE pseudonym_requests (
    sender          text        NOT NULL,
    message_id      uuid        NOT NULL,
    query_id        text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('query', 'details')),
    received_at     timestamptz NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('hit', 'no_hit', 'refused', 'pending', 'approved', 'denied')),
    reason          text,
    facts           jsonb       NOT NULL,
    index_id        bigint,
    decided_at      timestamptz,
    actor           text,
    justification   text,
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
