-- Password reset by a mailed link (src/auth/reset_tokens.rs).
--
-- A token is never stored: only its HMAC-SHA256 under a key derived from the server secret,
-- so neither a copy of this file nor the audit store gives a working link. One row per user:
-- a newer token replaces the older one, any password change deletes it, and using it or
-- cancelling it deletes it too.
CREATE TABLE reset_tokens (
    username   TEXT    PRIMARY KEY NOT NULL,
    mac        BLOB    NOT NULL UNIQUE CHECK (length(mac) = 32),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    -- Set by compare-and-set while one confirmation runs, so two at once cannot both use it;
    -- cleared again when that confirmation is refused (policy, TrueNAS), deleted on success.
    claimed    INTEGER NOT NULL DEFAULT 0 CHECK (claimed IN (0, 1))
) STRICT;

-- When the last reset mail (link or refusal) went to each user: at most one per
-- reset.mail_interval_secs. Rows exist only for accounts a mail was sent to, and rows older
-- than the interval are purged, so the table stays as small as the NAS' user list.
CREATE TABLE reset_mail_sent (
    username TEXT    PRIMARY KEY NOT NULL,
    sent_ms  INTEGER NOT NULL
) STRICT;
