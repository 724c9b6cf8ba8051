-- +goose Up
-- Revocations a restore learnt from the last published CRL (gatehouse
-- restore --last-crl) for certificates issued after the backup: the
-- restored database never saw them, and certificates.device_id must name a
-- device. They stay on every CRL until not_after (their issuer's expiry:
-- the list does not carry the leaf's).
CREATE TABLE restored_revocations (
    serial            TEXT PRIMARY KEY,
    revoked_at        BIGINT NOT NULL,
    revocation_reason INTEGER NOT NULL,
    not_after         BIGINT NOT NULL
);
CREATE INDEX restored_revocations_not_after ON restored_revocations (not_after);

-- +goose Down
DROP TABLE restored_revocations;
