-- A rebuild of a workspace's history from its stored events, one row per workspace: the latest
-- asked for, its progress (contacts are rebuilt in id order; `done_through` is the last one done) and
-- when it finished.
CREATE TABLE reprojections (
    workspace_id    BIGINT PRIMARY KEY REFERENCES workspaces(id),
    reason          TEXT    NOT NULL,
    requested_at    BIGINT NOT NULL,
    done_through    BIGINT NOT NULL DEFAULT 0,
    contacts_total  BIGINT NOT NULL,
    contacts_done   BIGINT NOT NULL DEFAULT 0,
    events_done     BIGINT NOT NULL DEFAULT 0,
    finished_at     BIGINT
);
