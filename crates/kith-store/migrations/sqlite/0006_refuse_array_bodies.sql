-- Segment signs only the first event of a JSON-array body: a workspace with a signing secret
-- may refuse such bodies so that every event it accepts is covered by a signature.
ALTER TABLE workspaces ADD COLUMN refuse_array_bodies INTEGER NOT NULL DEFAULT 0;
