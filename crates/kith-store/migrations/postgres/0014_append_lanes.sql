-- Appends no longer take one lock shared by every node: each takes the lock of one of 16
-- lanes (the first free one), from its insert to its commit, so that within a lane sequence numbers
-- become visible in order, and appends on different lanes run in parallel. The projection
-- keeps a watermark per lane (`lane_watermarks`): an entry it has not seen is always after
-- its lane's watermark. Reads that must see acknowledged events wait until every lane's
-- watermark passes the head the lane had when they started.
ALTER TABLE event_log ADD COLUMN lane INT NOT NULL DEFAULT 0;
ALTER TABLE event_log ALTER COLUMN lane DROP DEFAULT;
-- Renamed, so that a node from before this migration fails at its first use of the sequence
-- instead of moving it back (it set the sequence past the block it took, which is only
-- safe under the one lock it took and nodes of this version do not).
ALTER SEQUENCE event_log_seq RENAME TO event_log_entries;
ALTER TABLE event_log ALTER COLUMN seq SET DEFAULT nextval('event_log_entries');

-- Written by appends, each under its lane's lock.
CREATE TABLE log_lanes (
    lane      INT    PRIMARY KEY,
    -- The last sequence number appended to the lane.
    appended  BIGINT NOT NULL,
    -- Entries ever appended to the lane.
    entries   BIGINT NOT NULL
);
-- Written by the projection, in the transaction that applies the entries: its own table, so
-- that an append never waits for a projection transaction to end.
CREATE TABLE lane_watermarks (
    lane     INT    PRIMARY KEY,
    -- The last sequence number of the lane the projection applied.
    applied  BIGINT NOT NULL
);
-- The entries appended before this migration are lane 0's. Counted as the applied ones (the
-- old watermark counted them, with any number a failed append skipped) and those still in the
-- log, so that the lag is exactly what is left to apply.
INSERT INTO log_lanes (lane, appended, entries)
SELECT lane, CASE WHEN lane = 0 THEN (SELECT appended FROM log_head) ELSE 0 END,
       CASE WHEN lane = 0
            THEN (SELECT applied FROM projection_state WHERE shard = 0) + (SELECT count(*) FROM event_log)
            ELSE 0 END
FROM generate_series(0, 15) AS lane;
INSERT INTO lane_watermarks (lane, applied)
SELECT lane, CASE WHEN lane = 0 THEN (SELECT applied FROM projection_state WHERE shard = 0) ELSE 0 END
FROM generate_series(0, 15) AS lane;
-- Planned from their real size (16 rows) from the start.
ANALYZE log_lanes, lane_watermarks;

-- The projection's fence and the count of entries it applied. A node from before this
-- migration neither finds `log_head` to append to nor `applied` to project from: it answers
-- events with an error, which senders retry (on an upgraded node), instead of applying the
-- log in an order this version does not keep.
ALTER TABLE projection_state RENAME COLUMN applied TO entries;
DROP TABLE log_head;
