-- The portal's own TOTP second factor (src/totp/).
--
-- No secret is stored in the clear. TOTP secrets are XChaCha20-Poly1305 ciphertexts
-- (version byte 1 || 24-byte nonce || ciphertext+tag) under a key derived from the server
-- secret; the associated data names the user and the column (active or pending), so a blob
-- copied to another user's row, or from pending to active, fails to decrypt instead of
-- granting anything. Backup codes are stored only as argon2id hashes.
CREATE TABLE totp_enrollments (
    username           TEXT    PRIMARY KEY NOT NULL,
    active_secret      BLOB,               -- NULL until an enrollment is confirmed
    pending_secret     BLOB,               -- offered, not yet confirmed with a code; a
                                           -- re-enrollment never touches active_secret
    pending_created_at INTEGER,            -- unix seconds; stale after enrollment_ttl
    last_step          INTEGER NOT NULL DEFAULT 0,  -- highest accepted 30 s step of the active
                                           -- secret; only ever raised by compare-and-set, so a
                                           -- code is accepted once even under concurrency
    enabled_at         INTEGER,            -- unix seconds the active secret was confirmed
    last_used_at       INTEGER,            -- unix seconds of the last successful verification
    updated_at         INTEGER NOT NULL,
    CHECK ((pending_secret IS NULL) = (pending_created_at IS NULL))
) STRICT;

-- Ten single-use codes per user, replaced as a set at each confirmed enrollment. used_at is
-- set by compare-and-set (WHERE used_at IS NULL), so a code works exactly once; used rows
-- stay so the count of remaining codes is visible.
CREATE TABLE totp_backup_codes (
    username TEXT    NOT NULL REFERENCES totp_enrollments (username) ON DELETE CASCADE,
    slot     INTEGER NOT NULL CHECK (slot >= 0),
    hash     TEXT    NOT NULL,   -- argon2id PHC string, random salt per code
    used_at  INTEGER,            -- unix seconds; NULL while unused
    PRIMARY KEY (username, slot)
) STRICT;
