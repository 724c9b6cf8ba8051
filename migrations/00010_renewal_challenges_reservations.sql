-- +goose Up
-- A renewal over plain HTTP proves a fresh possession of the device key by
-- signing a server nonce into its CSR (issue 9). The nonce is bound to the
-- serial of the certificate it was issued for and looked up by its hash; it
-- is deleted when redeemed (single use) or once expired, so any replica can
-- redeem a nonce another one issued. The nonce itself is kept too: it is no
-- secret (worthless without the key), and everyone who asks for a
-- certificate's challenge gets the live one, so asking cannot evict the
-- device's own.
CREATE TABLE renewal_challenges (
    hash       TEXT PRIMARY KEY,
    nonce      TEXT NOT NULL,
    serial     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX renewal_challenges_serial ON renewal_challenges (serial, created_at);
CREATE INDEX renewal_challenges_expires ON renewal_challenges (expires_at);

-- The certificate an enrollment issued with the token: a retry of that
-- enrollment (same token, same key) gets it again instead of token_used.
ALTER TABLE bootstrap_tokens ADD COLUMN used_serial TEXT;

-- Device ids fixed by unused tokens are reserved for them; enrollments and
-- new batches look them up by id.
CREATE INDEX bootstrap_tokens_reserved ON bootstrap_tokens (device_id)
    WHERE device_id IS NOT NULL AND used_at IS NULL;

-- +goose Down
DROP INDEX bootstrap_tokens_reserved;
ALTER TABLE bootstrap_tokens DROP COLUMN used_serial;
DROP INDEX renewal_challenges_expires;
DROP INDEX renewal_challenges_serial;
DROP TABLE renewal_challenges;
