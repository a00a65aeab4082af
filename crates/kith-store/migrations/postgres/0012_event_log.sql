-- The event log: every accepted event, appended by whichever node received it, applied to
-- everything derived by the node holding the projection lease, and deleted once applied
-- (the events table keeps what the timeline shows). Appends hold a lock from their insert to
-- their commit, so sequence numbers become visible in order and the projection, reading
-- after its watermark, never passes one that is still to commit.
CREATE TABLE event_log (
    seq          BIGINT PRIMARY KEY,
    workspace_id BIGINT NOT NULL,
    digest       BYTEA  NOT NULL,
    event_type   TEXT   NOT NULL,
    occurred_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    payload      TEXT   NOT NULL
);

CREATE SEQUENCE event_log_seq;

-- The last sequence number appended, written by each append under its lock. The log's own
-- max(seq) would do, but applied entries are deleted, and until a vacuum an index scan
-- for it steps over every deleted one.
CREATE TABLE log_head (
    id       INT    PRIMARY KEY,
    appended BIGINT NOT NULL
);
INSERT INTO log_head (id, appended) VALUES (0, 0);

-- How far the projection has applied the log, written in the transaction that applies it.
CREATE TABLE projection_state (
    shard   INT    PRIMARY KEY,
    applied BIGINT NOT NULL
);
INSERT INTO projection_state (shard, applied) VALUES (0, 0);
