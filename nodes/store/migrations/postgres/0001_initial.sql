-- Version 1 of the node store, PostgreSQL dialect (twin of ../sqlite/0001_initial.sql).
-- Native types: uuid ids, timestamptz times, bytea hashes, jsonb documents. The audit
-- log keeps its details as json (verbatim text), since the hash chain is computed over
-- the exact canonical JSON and jsonb would renormalise numbers.

CREATE TABLE records (
    message_id      uuid        PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    sender          text        NOT NULL,
    message_type    text        NOT NULL,
    record_key      text        NOT NULL,
    sequence        bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    category        text,
    tlp             text        NOT NULL,
    handling_code   text        NOT NULL,
    recipients      jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    envelope_hash   bytea       NOT NULL,
    expires_at      timestamptz,
    state           text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'withdrawn')),
    withdrawn_at    timestamptz,
    retraction_id   uuid
);
CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE consumer_offsets (
    group_id        text    NOT NULL,
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (group_id, topic, kafka_partition)
);

CREATE TABLE quarantine (
    id              bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset    bigint      NOT NULL CHECK (kafka_offset >= 0),
    reason          text        NOT NULL CHECK (reason <> ''),
    detail          text        NOT NULL,
    raw             bytea       NOT NULL,
    received_at     timestamptz NOT NULL,
    message_id      uuid,
    sender          text
);

CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    record_key      text        NOT NULL,
    message_type    text        NOT NULL,
    payload         jsonb       NOT NULL,
    handling        jsonb       NOT NULL,
    recipients      jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'signed', 'sent')),
    message_id      uuid,
    sequence        bigint,
    value           bytea,
    envelope_hash   bytea,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    sent_at         timestamptz
);
CREATE UNIQUE INDEX outbox_topic_sequence ON outbox (topic, sequence);
CREATE INDEX outbox_unsent ON outbox (status, id) WHERE status <> 'sent';

CREATE TABLE chain_heads (
    topic           text    PRIMARY KEY,
    sequence        bigint  NOT NULL CHECK (sequence >= 1),
    envelope_hash   bytea
);

CREATE TABLE audit_log (
    seq             bigint      PRIMARY KEY,
    at              timestamptz NOT NULL,
    action          text        NOT NULL,
    actor           text        NOT NULL,
    justification   text        NOT NULL,
    recipients      jsonb       NOT NULL,
    subject         text,
    details         json        NOT NULL,
    previous_hash   bytea       NOT NULL,
    hash            bytea       NOT NULL
);

CREATE TABLE node_status (
    key             text    PRIMARY KEY,
    value           text    NOT NULL
);
