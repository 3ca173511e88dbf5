-- Version 4, PostgreSQL dialect (twin of ../sqlite/0004_sender_message_id.sql): wire v2 makes
-- the identity of a message (sender, message id). A member can no longer squat another's id:
-- two senders' records with one id are both stored; one sender's id twice is a replay.
-- A plain index on message_id stays for look-ups by id. Deliver events name the sender,
-- so they join their own record only.

ALTER TABLE records DROP CONSTRAINT records_pkey;
ALTER TABLE records ADD CONSTRAINT records_pkey PRIMARY KEY (sender, message_id);
CREATE INDEX records_message_id ON records (message_id);
ALTER TABLE connector_events ADD COLUMN sender text;
