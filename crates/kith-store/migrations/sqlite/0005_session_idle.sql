-- When a session was last used, so an unused one ends before its 30-day limit (milliseconds
-- since the Unix epoch; NULL until first used after sign-in: created_at stands in).
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
