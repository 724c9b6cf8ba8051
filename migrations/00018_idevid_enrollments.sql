-- +goose Up
-- One row per vendor IDevID that tried to enroll (issue 15), keyed by
-- idevid.Identity.Key (SHA-256 over the issuer's DER and the serial). An
-- IDevID enrolls at most once unless its vendor allows re-enrollment: the
-- row is claimed before anything is signed, exactly like a bootstrap token
-- (migration 00012): a conditional write sets claim_id/claim_until, the
-- enrollment commits only while the claim is its own, and a claim whose
-- holder died lapses at claim_until. device_id, cert_serial and enrolled_at
-- are NULL until the first enrollment commits; cert_serial is the
-- certificate the last (re-)enrollment issued, for a retry after a lost
-- reply to get it again.
CREATE TABLE idevid_enrollments (
    idevid_key    TEXT PRIMARY KEY,
    fleet         TEXT NOT NULL,
    vendor        TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    idevid_serial TEXT NOT NULL,
    device_id     TEXT,
    cert_serial   TEXT,
    enrolled_at   BIGINT,
    enrollments   INTEGER NOT NULL DEFAULT 0,
    claim_id      TEXT,
    claim_until   BIGINT,
    created_at    BIGINT NOT NULL
);
-- An operator looks up what IDevID a device enrolled with.
CREATE INDEX idevid_enrollments_device ON idevid_enrollments (device_id);

-- +goose Down
DROP INDEX idevid_enrollments_device;
DROP TABLE idevid_enrollments;
