-- +goose Up
-- Web UI users. Passwords are stored as PHC-format argon2id strings; a
-- session row is keyed by the SHA-256 of its secret, so a database dump
-- holds no usable cookie. Sessions live in the database so every replica
-- honours every session.
CREATE TABLE admin_users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    disabled_at   BIGINT,
    last_login_at BIGINT
);

CREATE TABLE admin_sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    user_agent   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- +goose Down
DROP TABLE admin_sessions;
DROP TABLE admin_users;
