-- Version 4, SQLite dialect (twin of ../postgres/0004_sender_message_id.sql): wire v2 makes
-- the identity of a message (sender, message id). A member can no longer squat another's id:
-- two senders' records with one id are both stored; one sender's id twice is a replay.
-- The unique index leads with the sender (a handful of values), then the UUIDv7, so each
-- sender's ids still grow at their own right edge. A plain index on message_id stays for
-- look-ups by id. Deliver events name the sender, so they join their own record only.

DROP INDEX records_message_id;
CREATE UNIQUE INDEX records_sender_message_id ON records (sender, message_id);
CREATE INDEX records_message_id ON records (message_id);
ALTER TABLE connector_events ADD COLUMN sender TEXT;
