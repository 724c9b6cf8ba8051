-- +goose Up
-- Live-session kicks: one durable request per (device, broker) to cut the
-- device's broker sessions after a revocation or suspension. A new request
-- for the same pair reuses the row (bumping generation), so the table stays
-- bounded by devices × brokers and the row always shows the latest state;
-- the history is in the audit log.
--
-- status: pending (to deliver, retried with backoff), done, failed (fast
-- retries exhausted; still retried slowly and shown until it succeeds).
-- A worker claims a row by moving lease_until into the future with a
-- conditional UPDATE, so replicas sharing the database do not deliver the
-- same request at once; an expired lease (a replica died mid-delivery) makes
-- the row claimable again. generation guards the outcome: a worker records
-- it only if no newer request arrived while it delivered.
CREATE TABLE session_kicks (
    device_id       TEXT NOT NULL,
    broker          TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    generation      BIGINT NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    requested_at    BIGINT NOT NULL,
    done_at         BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (device_id, broker)
);
CREATE INDEX session_kicks_due ON session_kicks (status, next_attempt_at);
CREATE INDEX session_kicks_updated ON session_kicks (updated_at);

-- +goose Down
DROP TABLE session_kicks;
