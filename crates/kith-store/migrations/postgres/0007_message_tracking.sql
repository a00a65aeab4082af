-- What became of each message: the outbox delivery it came from (a message held for quiet hours
-- is one row, `held` until it goes), its topic, subject and the random id its tracking links
-- carry, its opens and clicks, and the unsubscribe it led to. Contacts whose address the mail
-- server refused for good (a hard bounce) are not sent messages again.

ALTER TABLE message_log ADD COLUMN delivery_id BIGINT;
ALTER TABLE message_log ADD COLUMN topic_id BIGINT;
ALTER TABLE message_log ADD COLUMN email_id TEXT;
ALTER TABLE message_log ADD COLUMN subject TEXT;
-- held: when it will go.
ALTER TABLE message_log ADD COLUMN send_at BIGINT;
ALTER TABLE message_log ADD COLUMN opened_at BIGINT;
ALTER TABLE message_log ADD COLUMN opens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE message_log ADD COLUMN clicked_at BIGINT;
ALTER TABLE message_log ADD COLUMN clicks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE message_log ADD COLUMN unsubscribed_at BIGINT;

-- NULLs are distinct: rows written before this migration have neither.
CREATE UNIQUE INDEX message_log_delivery ON message_log (delivery_id);
CREATE UNIQUE INDEX message_log_email ON message_log (email_id);
CREATE INDEX message_log_template ON message_log (workspace_id, template_id);
CREATE INDEX message_log_rule ON message_log (workspace_id, rule_id);

-- Erasing (or merging away) a contact erases its bounce.
CREATE TABLE message_bounces (
    workspace_id  BIGINT NOT NULL,
    contact_id    BIGINT NOT NULL PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
    -- The address that bounced: a contact whose email changes since may be sent to again.
    email         TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    at            BIGINT NOT NULL
);
