-- Journeys: an entry trigger, steps over days, exit conditions (the spec is JSON, read by
-- kith_core::journeys). `enabled` mirrors the spec so the job skips paused journeys in SQL.
CREATE TABLE journeys (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    spec          TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX journeys_workspace ON journeys (workspace_id);

-- One contact's way through a journey. The occurrence (the triggering event's messageId, the
-- audience change, the due date…) is unique per journey and contact, so a replayed trigger
-- enters nobody twice. `step` and `step_since` are the position in logical time; the job
-- takes entries whose `next_due_at` has come (a wait's deadline, or an event of the contact).
CREATE TABLE journey_entries (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    journey_id    INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL,
    occurrence    TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    -- The entry event's properties, for "the same cartId" and branches.
    properties    TEXT    NOT NULL,
    entered_at    INTEGER NOT NULL,
    -- active, completed or exited.
    state         TEXT    NOT NULL,
    step          INTEGER,
    step_since    INTEGER NOT NULL,
    next_due_at   INTEGER,
    ended_at      INTEGER,
    reason        TEXT,
    UNIQUE (journey_id, contact_id, occurrence)
);
CREATE INDEX journey_entries_due ON journey_entries (next_due_at) WHERE state = 'active';
CREATE INDEX journey_entries_contact ON journey_entries (contact_id, journey_id, entered_at);
CREATE INDEX journey_entries_step ON journey_entries (journey_id, step) WHERE state = 'active';

-- Every step an entry passed, with why. The unique key is the claim that makes a step act at
-- most once per entry: it is inserted in the transaction that queues the step's deliveries.
CREATE TABLE journey_steps (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    journey_id    INTEGER NOT NULL,
    entry_id      INTEGER NOT NULL,
    contact_id    INTEGER NOT NULL,
    step          INTEGER NOT NULL,
    -- When the step was passed in the journey's logical time, and when the job recorded it.
    at            INTEGER NOT NULL,
    recorded_at   INTEGER NOT NULL,
    why           TEXT    NOT NULL,
    UNIQUE (entry_id, step)
);
CREATE INDEX journey_steps_journey ON journey_steps (journey_id, step);
CREATE INDEX journey_steps_contact ON journey_steps (contact_id);
