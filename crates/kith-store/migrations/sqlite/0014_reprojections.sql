-- A rebuild of a workspace's history from its stored events, one row per workspace: the latest
-- asked for, its progress (contacts are rebuilt in id order; `done_through` is the last one done) and
-- when it finished.
CREATE TABLE reprojections (
    workspace_id    INTEGER PRIMARY KEY REFERENCES workspaces(id),
    reason          TEXT    NOT NULL,
    requested_at    INTEGER NOT NULL,
    done_through    INTEGER NOT NULL DEFAULT 0,
    contacts_total  INTEGER NOT NULL,
    contacts_done   INTEGER NOT NULL DEFAULT 0,
    events_done     INTEGER NOT NULL DEFAULT 0,
    finished_at     INTEGER
);
