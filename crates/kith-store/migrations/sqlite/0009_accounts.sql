-- Regions: the region a workspace belongs to (e.g. 'eu'), set when it is created. NULL for a
-- workspace made before regions: it belongs to the region of the node its database serves.
ALTER TABLE workspaces ADD COLUMN region TEXT;

-- Account health: the workspace's model (JSON, checked by kith-core's health.rs before it is
-- stored), the CSM's rating of an account, and one score per account per day.
CREATE TABLE health_models (
    workspace_id  INTEGER PRIMARY KEY,
    model         TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE account_ratings (
    account_id    INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL,
    rating        INTEGER NOT NULL,
    rated_at      INTEGER NOT NULL
);

CREATE TABLE account_health_history (
    account_id    INTEGER NOT NULL,
    workspace_id  INTEGER NOT NULL,
    -- The day key (days since 1970-01-01 in the workspace's time zone) the score is of.
    day           INTEGER NOT NULL,
    score         INTEGER NOT NULL,
    band          TEXT    NOT NULL,
    -- Each factor's contribution, as the API shows it.
    factors       TEXT    NOT NULL,
    recorded_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, day)
);
