-- Version 3, PostgreSQL dialect (twin of ../sqlite/0003_outbox_payload_avro.sql): the outbox
-- keeps each payload's Avro single-object encoding (exchange.seal.encode_payload) from the
-- moment it is accepted, so the publisher signs it without validating the payload again.
-- NULL for items enqueued before this version: the publisher seals those from the JSON
-- `payload` column, which stays for operators to read.

ALTER TABLE outbox ADD COLUMN payload_avro bytea;
