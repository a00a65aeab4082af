-- Messages to contacts: subscription topics, templates, the sender of each workspace, each
-- contact's own choices per topic, and the log of every message considered for a contact.

CREATE TABLE message_topics (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    -- 1: nothing is sent without the contact's yes; 0: sent until the contact says no.
    opt_in        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE message_templates (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    topic_id      INTEGER NOT NULL REFERENCES message_topics(id),
    subject       TEXT    NOT NULL,
    html          TEXT    NOT NULL,
    text          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX message_templates_workspace ON message_templates (workspace_id, id);

-- Per workspace: who messages come from, how many a contact may get, and when not.
CREATE TABLE message_senders (
    workspace_id  INTEGER PRIMARY KEY,
    from_name     TEXT,
    from_address  TEXT,
    reply_to      TEXT,
    -- At most cap_count messages per contact within cap_window_hours, across rules.
    cap_count         INTEGER,
    cap_window_hours  INTEGER,
    -- "HH:MM" in the contact's time zone: messages due in between wait for the end.
    quiet_start       TEXT,
    quiet_end         TEXT,
    -- HMAC key of the workspace's unsubscribe links, hex.
    link_secret   TEXT    NOT NULL
);

CREATE TABLE message_subscriptions (
    workspace_id  INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL,
    topic_id      INTEGER NOT NULL,
    subscribed    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (contact_id, topic_id)
) WITHOUT ROWID;

CREATE TABLE message_log (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL,
    rule_id       INTEGER,
    template_id   INTEGER NOT NULL,
    -- sent or skipped.
    outcome       TEXT    NOT NULL,
    reason        TEXT,
    at            INTEGER NOT NULL
);
CREATE INDEX message_log_contact ON message_log (contact_id, id);

-- Erasing (or merging away) a contact erases its choices and its message log, whichever code
-- path deletes the row: SQLite runs without foreign-key enforcement, so a trigger does it.
CREATE TRIGGER contacts_erase_messages AFTER DELETE ON contacts BEGIN
    DELETE FROM message_subscriptions WHERE contact_id = OLD.id;
    DELETE FROM message_log WHERE contact_id = OLD.id;
END;
