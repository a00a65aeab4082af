-- Nudges (SPEC §5): rules, their firings, the outbox of outbound messages, the daily digest
-- and outbound Segment settings.

ALTER TABLE workspaces ADD COLUMN segment_host TEXT;
ALTER TABLE workspaces ADD COLUMN segment_write_key TEXT;
-- "HH:MM" in the workspace's time zone; NULL: no digest.
ALTER TABLE workspaces ADD COLUMN digest_time TEXT;
ALTER TABLE workspaces ADD COLUMN digest_webhook_url TEXT;
ALTER TABLE workspaces ADD COLUMN digest_email TEXT;
-- The day key of the last digest sent.
ALTER TABLE workspaces ADD COLUMN digest_last_day INTEGER;

-- The bucket the nudge job last saw (NULL: never evaluated, which counts as cold) and the
-- due date it last nudged about: compare-and-set on these makes each change fire once.
ALTER TABLE contacts ADD COLUMN bucket TEXT;
ALTER TABLE contacts ADD COLUMN due_notified_at INTEGER;

CREATE TABLE rules (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    spec          TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX rules_workspace ON rules (workspace_id);

-- One row per rule, contact and trigger occurrence: the unique index is what makes a rule
-- fire at most once per occurrence, whichever node sees it.
CREATE TABLE rule_firings (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    rule_id       INTEGER NOT NULL REFERENCES rules(id),
    contact_id    INTEGER NOT NULL REFERENCES contacts(id),
    occurrence    TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    triggered_at  INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    -- waiting, fired or cancelled (the unless event happened in time).
    state         TEXT    NOT NULL,
    decided_at    INTEGER,
    UNIQUE (rule_id, contact_id, occurrence)
);
CREATE INDEX rule_firings_waiting ON rule_firings (due_at) WHERE state = 'waiting';
CREATE INDEX rule_firings_contact ON rule_firings (contact_id, triggered_at);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    workspace_id     INTEGER NOT NULL,
    -- webhook, email or segment.
    kind             TEXT    NOT NULL,
    -- The url, the recipient, or the Segment host.
    target           TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    -- pending, sent or failed.
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    firing_id        INTEGER
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_workspace ON outbox (workspace_id, id);
