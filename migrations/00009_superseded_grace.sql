-- +goose Up
-- How long a certificate replaced by a renewal stays good before it is
-- revoked with reason superseded (store.RecordRenewal, the superseded
-- sweeper); 0 revokes it in the renewal's own transaction.
ALTER TABLE profiles ADD COLUMN superseded_grace_seconds BIGINT NOT NULL DEFAULT 3600
    CHECK (superseded_grace_seconds >= 0);

-- When a superseded certificate is due for revocation: set by the renewal
-- from its profile's grace, so a later change of the grace does not move
-- certificates already superseded.
ALTER TABLE certificates ADD COLUMN revoke_after BIGINT;

-- Certificates superseded before this migration get the default grace from
-- the time their successor was issued: the first certificate of the device
-- created after them. A row without one (hand-edited data) is due at once.
UPDATE certificates SET revoke_after = COALESCE((SELECT MIN(n.created_at) FROM certificates n
    WHERE n.device_id = certificates.device_id AND n.serial <> certificates.serial
    AND n.created_at >= certificates.created_at), 0) + 3600000
WHERE status = 'superseded';

-- The sweeper's scan. Partial, so only superseded certificates are in it:
-- enrollments and revocations never write to it.
CREATE INDEX certificates_superseded_due ON certificates (revoke_after) WHERE status = 'superseded';

-- +goose Down
DROP INDEX certificates_superseded_due;
ALTER TABLE certificates DROP COLUMN revoke_after;
ALTER TABLE profiles DROP COLUMN superseded_grace_seconds;
