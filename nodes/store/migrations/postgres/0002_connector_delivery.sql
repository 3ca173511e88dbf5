-- Version 2, PostgreSQL dialect (twin of ../sqlite/0002_connector_delivery.sql): a durable
-- queue of what the outbound connectors must be told, and one cursor per connector over it.
-- commit_batch appends the events in the same transaction as the records, under an
-- advisory lock, so seq order is commit order (a reader never sees seq n+1 before n).

CREATE TABLE connector_events (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('deliver', 'retract')),
    message_id      uuid        NOT NULL,
    topic           text        NOT NULL
);

CREATE TABLE connector_cursors (
    connector       text        PRIMARY KEY,
    last_seq        bigint      NOT NULL CHECK (last_seq >= 0),
    updated_at      timestamptz NOT NULL
);
