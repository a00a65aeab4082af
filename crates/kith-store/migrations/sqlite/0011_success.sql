-- Account health alerts: the score and band each account had when the health pass last saw
-- it (a change of band is found against it, once, by the pass that replaces it), and what
-- rules about an account's health fired (the occurrence makes a firing happen once).
CREATE TABLE account_health_state (
    account_id    INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    score         INTEGER NOT NULL,
    band          TEXT    NOT NULL,
    observed_at   INTEGER NOT NULL
);

CREATE TABLE account_firings (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    rule_id       INTEGER NOT NULL,
    account_id    INTEGER NOT NULL,
    occurrence    TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    triggered_at  INTEGER NOT NULL,
    UNIQUE (rule_id, account_id, occurrence)
);

-- Owners: the user of the workspace who looks after an account or a contact.
CREATE TABLE owners (
    workspace_id  INTEGER NOT NULL,
    -- 'account' or 'contact'.
    subject       TEXT    NOT NULL,
    subject_id    INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    assigned_at   INTEGER NOT NULL,
    PRIMARY KEY (subject, subject_id)
);
CREATE INDEX owners_user ON owners (user_id, subject);

-- Follow-up tasks on a contact or an account, for a user, due on a day (the workspace's day key).
CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    contact_id    INTEGER,
    account_id    INTEGER,
    assignee_id   INTEGER,
    note          TEXT    NOT NULL,
    due_day       INTEGER NOT NULL,
    done_at       INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX tasks_workspace ON tasks (workspace_id, due_day, id);
CREATE INDEX tasks_contact ON tasks (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX tasks_account ON tasks (account_id) WHERE account_id IS NOT NULL;

-- The digest each owner gets of their own items, claimed once per user and day.
CREATE TABLE owner_digests (
    user_id       INTEGER NOT NULL,
    day           INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
