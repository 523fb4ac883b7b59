-- Expiry reminders already mailed (src/auth/expiry_reminders.rs): once per user, per
-- threshold (`notify.expiry_days`), per password. A new password has a new
-- `password_changed`, so its reminders go out again; rows older than a year are purged.
CREATE TABLE expiry_reminders (
    username         TEXT    NOT NULL,
    threshold_days   INTEGER NOT NULL CHECK (threshold_days >= 0),
    password_changed INTEGER NOT NULL,      -- last_password_change, unix seconds (0: unknown)
    sent_ms          INTEGER NOT NULL,
    PRIMARY KEY (username, threshold_days, password_changed)
) STRICT;
