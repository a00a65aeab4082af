-- The projection's watermark: the last event-log sequence number whose effects (contacts,
-- interactions, identities, the event stream, …) are in this database. It is updated in the
-- same transaction as those effects, so a crash never applies an event twice.
CREATE TABLE projection (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL
);
INSERT INTO projection (id, applied_seq) VALUES (1, 0);
