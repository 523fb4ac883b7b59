-- Failure rows still being counted (src/audit/store.rs). A failure's first occurrence must be
-- on disk within a fraction of a second, but its row in `audit_events` is immutable and
-- chained, and its count keeps rising until its UTC minute closes. So the writer keeps the
-- open rows here, updating `count` and `last_ts_ms` in place at every group commit (every
-- 100 ms while they change), and moves them into the chain, in one transaction, when the
-- minute closes. Rows left behind by a process that died are chained by the next server
-- that starts. These rows are not covered by the hash chain until then.
CREATE TABLE audit_open (
    writer      TEXT    NOT NULL,              -- random id of the writer that owns the row
    slot        INTEGER NOT NULL,              -- the writer's number for the coalescing key
    updated_ms  INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    last_ts_ms  INTEGER NOT NULL,
    count       INTEGER NOT NULL CHECK (count >= 1),
    event       TEXT    NOT NULL CHECK (event <> ''),
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'error')),
    username    TEXT,
    client_ip   TEXT,
    peer_ip     TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    verifier    TEXT,
    reason      TEXT,
    detail      TEXT    NOT NULL,
    PRIMARY KEY (writer, slot),
    CHECK (last_ts_ms >= ts_ms)
) STRICT;

-- Every row an admin should see: the chain, and the rows still open (id 0, no hashes,
-- `open` = 1). The read side (src/audit/query.rs, the charts) reads this view.
CREATE VIEW audit_all AS
    SELECT id, ts_ms, last_ts_ms, count, event, outcome, username, client_ip, peer_ip,
           user_agent, request_id, verifier, reason, detail, prev_hash, hash, 0 AS open
    FROM audit_events
    UNION ALL
    SELECT 0, ts_ms, last_ts_ms, count, event, outcome, username, client_ip, peer_ip,
           user_agent, request_id, verifier, reason, detail, '', '', 1
    FROM audit_open;
