-- +goose Up
-- How long after expiry a certificate of the profile may still be renewed
-- (a sleepy device that missed its window), by proof of its expired key and
-- only if it was never revoked or superseded; 0, the default, never.
ALTER TABLE profiles ADD COLUMN renew_after_expiry_seconds BIGINT NOT NULL DEFAULT 0
    CHECK (renew_after_expiry_seconds >= 0);

-- +goose Down
ALTER TABLE profiles DROP COLUMN renew_after_expiry_seconds;
