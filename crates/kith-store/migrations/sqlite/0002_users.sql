-- People who sign in to the web app, and their sessions. Times are milliseconds since the
-- Unix epoch.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    workspace_id   INTEGER NOT NULL REFERENCES workspaces(id),
    -- Normalised (trimmed, lower-case): sign-in looks a user up by email alone.
    email          TEXT    NOT NULL UNIQUE,
    -- A PHC string (argon2id with its salt and parameters); never the password.
    password_hash  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);

-- A session is found by the SHA-256 of its cookie's token, so a copy of the database does not
-- hand out live sessions.
CREATE TABLE sessions (
    token_hash  BLOB    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
