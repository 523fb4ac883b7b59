-- Every issued session token, so that logout and a password change can revoke it by jti
-- (a signed JWT alone stays valid until it expires).
CREATE TABLE sessions (
    jti        TEXT PRIMARY KEY NOT NULL,
    username   TEXT NOT NULL,
    stage      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,  -- unix seconds
    expires_at INTEGER NOT NULL,  -- unix seconds
    revoked_at INTEGER            -- unix seconds; NULL while valid
);

CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
