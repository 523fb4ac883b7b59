-- A reset link's claim becomes a lease, and the link remembers that a new password was sent
-- with it (src/auth/reset_tokens.rs).
--
-- `claimed` was a flag: a confirmation whose request was dropped (the client went away, the
-- process was killed) never cleared it, and the link stayed "in use" until it expired.
-- `claimed_until_ms` frees it by itself once no confirmation can still be running.
--
-- `sent_ms` is when a confirmation last handed a new password to TrueNAS. If the answer was
-- lost (a timeout, a dropped connection), TrueNAS may have applied it; the next try with the
-- same link then finds the password changed after `sent_ms`, and checks whether the password
-- it is given is the account's password now instead of calling the link void.
--
-- Rebuilt rather than altered: SQLite cannot drop `claimed` from a definition with comments
-- between its columns. Links outstanding during the upgrade keep working.
CREATE TABLE reset_tokens_v7 (
    username         TEXT    PRIMARY KEY NOT NULL,
    mac              BLOB    NOT NULL UNIQUE CHECK (length(mac) = 32),
    created_ms       INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    sent_ms          INTEGER
) STRICT;
INSERT INTO reset_tokens_v7 (username, mac, created_ms, expires_ms)
    SELECT username, mac, created_ms, expires_ms FROM reset_tokens;
DROP TABLE reset_tokens;
ALTER TABLE reset_tokens_v7 RENAME TO reset_tokens;
