-- +goose Up
-- Topic ACL policies: immutable versions, and an append-only activation log
-- whose newest row is the active version (a rollback is a new activation).
CREATE TABLE policy_versions (
    version    BIGINT PRIMARY KEY,
    policy     TEXT NOT NULL,
    tests      TEXT NOT NULL DEFAULT '',
    digest     TEXT NOT NULL,
    comment    TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE policy_activations (
    id           TEXT PRIMARY KEY,
    version      BIGINT NOT NULL REFERENCES policy_versions (version),
    activated_by TEXT NOT NULL,
    activated_at BIGINT NOT NULL
);
CREATE INDEX policy_activations_at ON policy_activations (activated_at);

-- +goose Down
DROP TABLE policy_activations;
DROP TABLE policy_versions;
