-- +goose Up
-- A certificate is signed only after its credential is claimed: a bootstrap
-- token (enrollment) or the current certificate (renewal) is claimed by a
-- conditional UPDATE, so of concurrent requests with one credential exactly
-- one signs. The claim is released when signing fails and expires at
-- claim_until when its holder died; the enrollment or renewal commits only
-- with the claim it took (store.Enrollment.Claim, store.Renewal.Claim).
ALTER TABLE bootstrap_tokens ADD COLUMN claim_id TEXT;
ALTER TABLE bootstrap_tokens ADD COLUMN claim_until BIGINT;
ALTER TABLE certificates ADD COLUMN renew_claim_id TEXT;
ALTER TABLE certificates ADD COLUMN renew_claim_until BIGINT;

-- A certificate that was signed but whose enrollment or renewal failed to
-- commit is kept here, revoked, instead of being dropped unseen: it is on
-- the CRL and OCSP answers revoked for it. It is not in certificates because
-- its device may not exist (a failed first enrollment), and certificates
-- references devices.
CREATE TABLE discarded_certificates (
    serial            TEXT PRIMARY KEY,
    fingerprint       TEXT NOT NULL,
    device_id         TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    pem               TEXT NOT NULL,
    revoked_at        BIGINT NOT NULL,
    revocation_reason INTEGER NOT NULL,
    cause             TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX discarded_certificates_not_after ON discarded_certificates (not_after);

-- +goose Down
DROP INDEX discarded_certificates_not_after;
DROP TABLE discarded_certificates;
ALTER TABLE certificates DROP COLUMN renew_claim_until;
ALTER TABLE certificates DROP COLUMN renew_claim_id;
ALTER TABLE bootstrap_tokens DROP COLUMN claim_until;
ALTER TABLE bootstrap_tokens DROP COLUMN claim_id;
