-- +goose Up
-- Tamper evidence for the audit trail (issue 11): every row appended from
-- now on carries its position in one chain per database (seq, 1, 2, …, set
-- by the store under a lock, never by time or id), the hash of the row
-- before it and its own hash, SHA-256 over its content and prev_hash
-- (store/auditchain.go). Rows written before this migration keep NULLs:
-- SQL cannot compute SHA-256 portably (SQLite has no such function), so the
-- chain starts at the first new row, whose prev_hash is the genesis value
-- (64 zeros). `gatehouse audit verify` checks the chained rows only.
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
-- Unique: two appends that read the same chain head (which the lock rules
-- out) fail instead of forking the chain. NULLs (old rows) do not collide.
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);

-- +goose Down
DROP INDEX audit_events_seq;
ALTER TABLE audit_events DROP COLUMN hash;
ALTER TABLE audit_events DROP COLUMN prev_hash;
ALTER TABLE audit_events DROP COLUMN seq;
