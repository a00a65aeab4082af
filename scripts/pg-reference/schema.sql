-- The naive set-based reference for kith on PostgreSQL (BENCHMARKS.md): the least a store of
-- Segment events does per event — claim its messageId, upsert its contact, upsert the
-- contact's day — on random text keys, 100 events per transaction. Run by
-- scripts/pg-reference.sh with pgbench; nothing of kith is involved.
CREATE TABLE ref_message_ids (
    message_id  text PRIMARY KEY
);
CREATE TABLE ref_contacts (
    user_id       text PRIMARY KEY,
    first_seen_at bigint NOT NULL,
    last_seen_at  bigint NOT NULL
);
CREATE TABLE ref_days (
    user_id   text    NOT NULL,
    day       integer NOT NULL,
    hits      integer NOT NULL,
    first_at  bigint  NOT NULL,
    PRIMARY KEY (user_id, day)
);
