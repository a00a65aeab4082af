-- SQLite gives a new row the largest id in its table plus one, so erasing the newest contact
-- (or deleting the newest journey) would hand its id to the next one: an old link, an API
-- client's stored id or a message naming it would then point at someone else. The largest id
-- ever deleted from each table is kept here, and new rows are numbered above it.
CREATE TABLE id_floors (
    name   TEXT    PRIMARY KEY,
    floor  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO id_floors (name, floor) VALUES ('contacts', 0), ('journeys', 0);
