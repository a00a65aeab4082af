-- Regions: the region a workspace belongs to (e.g. 'eu'), set when it is created. NULL for a
-- workspace made before regions: it belongs to the region of the node its database serves.
ALTER TABLE workspaces ADD COLUMN region TEXT;
