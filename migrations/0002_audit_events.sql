-- The tamper-evident audit log (src/audit/store.rs writes it, src/audit/chain.rs verifies it).
--
-- Rows are append-only and immutable: each row's `hash` is SHA-256 over the previous row's
-- hash and this row's canonical content, so an edit, a deletion or a reordering breaks the
-- chain. Ids are assigned by the writer as head.last_id + 1 (never reused, thanks to
-- AUTOINCREMENT), so a gap in ids means deleted rows. STRICT makes sqlite refuse values of
-- the wrong type, so a tampered row cannot turn into something the verifier cannot decode.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,              -- UTC ms of the first occurrence
    last_ts_ms  INTEGER NOT NULL,              -- UTC ms of the last occurrence (= ts_ms if count = 1)
    count       INTEGER NOT NULL CHECK (count >= 1),  -- > 1 for coalesced failure rows
    event       TEXT    NOT NULL CHECK (event <> ''),
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'error')),
    username    TEXT,                          -- as typed (hostile text: escape when displayed)
    client_ip   TEXT,
    peer_ip     TEXT,
    user_agent  TEXT,                          -- truncated by the writer
    request_id  TEXT,
    verifier    TEXT,
    reason      TEXT,
    detail      TEXT    NOT NULL,              -- JSON text, hashed byte for byte as stored
    prev_hash   TEXT    NOT NULL,              -- hex SHA-256; 64 zeros for the genesis row
    hash        TEXT    NOT NULL,
    CHECK (last_ts_ms >= ts_ms)
) STRICT;

-- The admin queries filter by time, user, IP or event and page newest first.
CREATE INDEX audit_events_by_time ON audit_events (ts_ms);
CREATE INDEX audit_events_by_user ON audit_events (username, ts_ms);
CREATE INDEX audit_events_by_ip ON audit_events (client_ip, ts_ms);
CREATE INDEX audit_events_by_event ON audit_events (event, ts_ms);

-- The signed end of the chain: one row, updated in the same transaction as every batch.
-- Its HMAC (keyed by a key derived from the server secret) is what makes cutting rows off
-- the end detectable: an unkeyed hash chain stays valid when truncated.
CREATE TABLE audit_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_id    INTEGER NOT NULL,
    last_hash  TEXT    NOT NULL,
    row_count  INTEGER NOT NULL,   -- rows ever appended to the chain, pruned ones included
    updated_ms INTEGER NOT NULL,
    mac        TEXT    NOT NULL    -- hex HMAC-SHA256 over (last_id, last_hash, row_count)
) STRICT;

-- One signed row per prune: where the remaining chain starts. A separate table rather than
-- special rows in audit_events, so that the admin list, export and summary never have to
-- filter anchors out, and pruning by time can never delete the anchor it just wrote.
-- `verify` starts from the newest anchor; older ones stay as a record of what was pruned.
CREATE TABLE audit_anchors (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms  INTEGER NOT NULL,
    cutoff_ms   INTEGER NOT NULL,   -- rows whose last occurrence is older were pruned
    last_id     INTEGER NOT NULL,   -- the last pruned row
    last_hash   TEXT    NOT NULL,   -- its hash: the first remaining row's prev_hash
    pruned_rows INTEGER NOT NULL,   -- rows deleted by this prune
    chain_rows  INTEGER NOT NULL,   -- rows in the chain up to and including last_id
    mac         TEXT    NOT NULL    -- hex HMAC-SHA256 over all of the above
) STRICT;
