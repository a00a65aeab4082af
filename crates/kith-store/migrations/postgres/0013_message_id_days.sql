-- SPEC §1.4 asks for a messageId to be remembered for seven days at least, not for ever: the
-- digests move to partitions by the day (UTC, days since the epoch) their event was received,
-- created a day ahead and dropped whole once older than the window by the nodes themselves
-- (`kith-store/src/postgres/dedup.rs`). The digests taken so far carry no day: they count as
-- received today, and are remembered for seven days more.
ALTER TABLE message_ids RENAME TO message_ids_unpartitioned;
ALTER INDEX message_ids_pkey RENAME TO message_ids_unpartitioned_pkey;

CREATE TABLE message_ids (
    -- A node from before this migration inserts no day: its digests go into the database's today.
    day     INT   NOT NULL DEFAULT floor(extract(epoch FROM now()) / 86400)::int,
    digest  BYTEA NOT NULL,
    PRIMARY KEY (digest, day)
) PARTITION BY RANGE (day);

DO $$
DECLARE
    today INT := floor(extract(epoch FROM now()) / 86400)::int;
BEGIN
    FOR day IN today - 1 .. today + 1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF message_ids FOR VALUES FROM (%s) TO (%s)',
            'message_ids_' || to_char(to_timestamp(day::bigint * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'),
            day,
            day + 1
        );
    END LOOP;
END $$;

INSERT INTO message_ids (digest) SELECT digest FROM message_ids_unpartitioned;
DROP TABLE message_ids_unpartitioned;
