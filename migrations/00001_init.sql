-- +goose Up
CREATE TABLE fleets (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE profiles (
    name                 TEXT PRIMARY KEY,
    key_types            TEXT NOT NULL,
    validity_seconds     BIGINT NOT NULL CHECK (validity_seconds > 0),
    renew_window_seconds BIGINT NOT NULL CHECK (renew_window_seconds >= 0),
    roles                TEXT NOT NULL DEFAULT '',
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    fleet      TEXT NOT NULL REFERENCES fleets (name),
    profile    TEXT NOT NULL REFERENCES profiles (name),
    status     TEXT NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'revoked')),
    labels     TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX devices_fleet_status ON devices (fleet, status);

CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    fingerprint       TEXT NOT NULL UNIQUE,
    device_id         TEXT NOT NULL REFERENCES devices (id),
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    pem               TEXT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason INTEGER,
    created_at        BIGINT NOT NULL
);
CREATE INDEX certificates_device ON certificates (device_id);
CREATE INDEX certificates_not_after ON certificates (not_after);

CREATE TABLE token_batches (
    id         TEXT PRIMARY KEY,
    fleet      TEXT NOT NULL REFERENCES fleets (name),
    profile    TEXT NOT NULL REFERENCES profiles (name),
    count      INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE bootstrap_tokens (
    hash       TEXT PRIMARY KEY,
    batch_id   TEXT NOT NULL REFERENCES token_batches (id),
    device_id  TEXT,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    TEXT
);
CREATE INDEX bootstrap_tokens_batch ON bootstrap_tokens (batch_id);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_object ON audit_events (object_type, object_id);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE admin_tokens;
DROP TABLE bootstrap_tokens;
DROP TABLE token_batches;
DROP TABLE certificates;
DROP TABLE devices;
DROP TABLE profiles;
DROP TABLE fleets;
