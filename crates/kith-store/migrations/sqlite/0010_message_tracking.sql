-- What became of each message: the outbox delivery it came from (a message held for quiet hours
-- is one row, `held` until it goes), its topic, subject and the random id its tracking links
-- carry, its opens and clicks, and the unsubscribe it led to. Contacts whose address the mail
-- server refused for good (a hard bounce) are not sent messages again.

ALTER TABLE message_log ADD COLUMN delivery_id INTEGER;
ALTER TABLE message_log ADD COLUMN topic_id INTEGER;
ALTER TABLE message_log ADD COLUMN email_id TEXT;
ALTER TABLE message_log ADD COLUMN subject TEXT;
-- held: when it will go.
ALTER TABLE message_log ADD COLUMN send_at INTEGER;
ALTER TABLE message_log ADD COLUMN opened_at INTEGER;
ALTER TABLE message_log ADD COLUMN opens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message_log ADD COLUMN clicked_at INTEGER;
ALTER TABLE message_log ADD COLUMN clicks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message_log ADD COLUMN unsubscribed_at INTEGER;

-- NULLs are distinct: rows written before this migration have neither.
CREATE UNIQUE INDEX message_log_delivery ON message_log (delivery_id);
CREATE UNIQUE INDEX message_log_email ON message_log (email_id);
CREATE INDEX message_log_template ON message_log (workspace_id, template_id);
CREATE INDEX message_log_rule ON message_log (workspace_id, rule_id);

CREATE TABLE message_bounces (
    workspace_id  INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL PRIMARY KEY,
    -- The address that bounced: a contact whose email changes since may be sent to again.
    email         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    at            INTEGER NOT NULL
);

CREATE TRIGGER contacts_erase_bounces AFTER DELETE ON contacts BEGIN
    DELETE FROM message_bounces WHERE contact_id = OLD.id;
END;
