-- +goose Up
-- A bulk revocation (today: every device enrolled from one token batch) runs
-- in chunks, each its own transaction that also advances cursor_device, so a
-- job cut off by a crash continues where its last committed chunk ended. A
-- replica runs a job only while it holds the lease (lease_owner,
-- lease_until); a lease that ran out is taken over by any replica.
CREATE TABLE revocation_jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('batch')),
    target        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    reason_code   INTEGER NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    total         BIGINT NOT NULL DEFAULT 0,
    done_count    BIGINT NOT NULL DEFAULT 0,
    revoked_count BIGINT NOT NULL DEFAULT 0,
    cursor_device TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
-- One job per target: revoking a batch again finds its job instead of
-- starting a second one that would revoke every device twice.
CREATE UNIQUE INDEX revocation_jobs_target ON revocation_jobs (kind, target);
CREATE INDEX revocation_jobs_status ON revocation_jobs (status, lease_until);

-- A batch job walks the batch's enrolled devices in used_by order from its
-- cursor; with only (batch_id) every chunk sorted the whole batch. The new
-- index replaces the old one (same leading column), so enrollment still
-- maintains one index on this table.
DROP INDEX bootstrap_tokens_batch;
CREATE INDEX bootstrap_tokens_batch_used ON bootstrap_tokens (batch_id, used_by);

-- +goose Down
DROP INDEX bootstrap_tokens_batch_used;
CREATE INDEX bootstrap_tokens_batch ON bootstrap_tokens (batch_id);
DROP TABLE revocation_jobs;
