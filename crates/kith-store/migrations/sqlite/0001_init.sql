-- kith's schema on SQLite. Times are milliseconds since the Unix epoch; day keys are days
-- since 1970-01-01 in the workspace's time zone.

CREATE TABLE workspaces (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    time_zone       TEXT    NOT NULL DEFAULT 'UTC',
    half_life_days  REAL    NOT NULL DEFAULT 30,
    -- interaction weights as JSON ({"activity":1,"note":1,"email":2,"call":3,"meeting":3}).
    weights         TEXT    NOT NULL DEFAULT '{"activity":1,"note":1,"email":2,"call":3,"meeting":3}',
    pending_days    INTEGER NOT NULL DEFAULT 30,
    signing_secret  TEXT,
    created_at      INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    kind          TEXT    NOT NULL CHECK (kind IN ('write', 'secret')),
    name          TEXT    NOT NULL,
    prefix        TEXT    NOT NULL,
    key_hash      BLOB    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE contacts (
    id                    INTEGER PRIMARY KEY,
    workspace_id          INTEGER NOT NULL REFERENCES workspaces(id),
    email                 TEXT    NOT NULL,
    name                  TEXT,
    traits                TEXT    NOT NULL DEFAULT '{}',
    computed_traits       TEXT    NOT NULL DEFAULT '[]',
    first_seen_at         INTEGER NOT NULL,
    last_seen_at          INTEGER NOT NULL,
    last_interaction_at   INTEGER,
    -- ln Σ w·exp(t/τ) over the contact's interactions (SPEC §3); NULL without interactions.
    closeness_key         REAL,
    -- The latest interaction's time in days as the closeness model counts it.
    closeness_last_t      REAL,
    -- The last moment the score was warm or better (≥ 40): what "losing touch" asks.
    warm_until            INTEGER,
    cadence_days          INTEGER,
    effective_cadence_days INTEGER,
    due_at                INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (workspace_id, email)
);
CREATE INDEX contacts_closeness ON contacts (workspace_id, closeness_key);
CREATE INDEX contacts_last_seen ON contacts (workspace_id, last_seen_at);
CREATE INDEX contacts_due ON contacts (workspace_id, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX contacts_warm_until ON contacts (workspace_id, warm_until) WHERE warm_until IS NOT NULL;

-- userIds, anonymousIds and alias previousIds, one namespace per workspace.
CREATE TABLE identities (
    workspace_id  INTEGER NOT NULL,
    value         TEXT    NOT NULL,
    contact_id    INTEGER NOT NULL REFERENCES contacts(id),
    kind          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, value)
) WITHOUT ROWID;
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE interactions (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL REFERENCES contacts(id),
    kind          TEXT    NOT NULL,
    day           INTEGER NOT NULL,
    occurred_at   INTEGER NOT NULL,
    description   TEXT    NOT NULL,
    hits          INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);
-- SPEC §2.2: one activity interaction per contact per day, whatever the arrival order.
CREATE UNIQUE INDEX interactions_one_activity_per_day ON interactions (contact_id, day) WHERE kind = 'activity';
CREATE INDEX interactions_timeline ON interactions (contact_id, occurred_at);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    -- NULL while the event is pending: its user is not known yet.
    contact_id    INTEGER,
    message_id    TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    name          TEXT,
    user_id       TEXT,
    anonymous_id  TEXT,
    occurred_at   INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    payload       TEXT    NOT NULL
);
CREATE INDEX events_stream ON events (contact_id, occurred_at) WHERE contact_id IS NOT NULL;
CREATE INDEX events_pending_user ON events (workspace_id, user_id) WHERE contact_id IS NULL;
CREATE INDEX events_pending_anonymous ON events (workspace_id, anonymous_id) WHERE contact_id IS NULL;
CREATE INDEX events_pending_age ON events (received_at) WHERE contact_id IS NULL;

-- SPEC §1.4: one event per messageId per workspace. The key is the first 16 bytes of
-- SHA-256(workspace id, messageId): compact, so the index stays in cache as it grows.
CREATE TABLE message_ids (
    digest  BLOB PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    group_id      TEXT    NOT NULL,
    name          TEXT,
    traits        TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, group_id)
);

CREATE TABLE account_members (
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    contact_id  INTEGER NOT NULL REFERENCES contacts(id),
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX account_members_contact ON account_members (contact_id);

CREATE TABLE audiences (
    id              INTEGER PRIMARY KEY,
    workspace_id    INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    computation_id  TEXT,
    space_id        TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (workspace_id, key)
);

-- The current membership; changed_at orders changes so late arrivals cannot undo newer ones.
CREATE TABLE audience_members (
    audience_id  INTEGER NOT NULL REFERENCES audiences(id),
    contact_id   INTEGER NOT NULL REFERENCES contacts(id),
    is_member    INTEGER NOT NULL,
    changed_at   INTEGER NOT NULL,
    PRIMARY KEY (audience_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX audience_members_contact ON audience_members (contact_id);

CREATE TABLE audience_history (
    id           INTEGER PRIMARY KEY,
    audience_id  INTEGER NOT NULL REFERENCES audiences(id),
    contact_id   INTEGER NOT NULL REFERENCES contacts(id),
    entered      INTEGER NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX audience_history_contact ON audience_history (contact_id, at);

CREATE TABLE alias_conflicts (
    id                INTEGER PRIMARY KEY,
    workspace_id      INTEGER NOT NULL,
    previous_id       TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    contact_id        INTEGER NOT NULL,
    other_contact_id  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    resolved_at       INTEGER
);
CREATE INDEX alias_conflicts_workspace ON alias_conflicts (workspace_id, resolved_at);

CREATE TABLE suppressions (
    workspace_id  INTEGER NOT NULL,
    email         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, email)
) WITHOUT ROWID;

-- Cadences inherited from an audience or account (SPEC §3.1).
CREATE TABLE cadence_rules (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    target        TEXT    NOT NULL CHECK (target IN ('audience', 'account')),
    target_key    TEXT    NOT NULL,
    days          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, target, target_key)
);
