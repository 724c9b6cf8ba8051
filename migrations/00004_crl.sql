-- +goose Up
-- The current certificate revocation list, one row (id = 1): every replica
-- serves the same list, and a newer number replaces it only if it is higher
-- (store.StoreCRL), so the number never goes back when replicas race. Only
-- the newest list is kept: a list over a million entries is tens of MB.
-- The DER is base64 TEXT, which both databases store the same way.
CREATE TABLE crls (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    crl_number  BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    entries     BIGINT NOT NULL,
    der         TEXT NOT NULL
);

-- CRL generation reads the revoked certificates that have not long expired.
-- Partial, so enrollment (which inserts active certificates) never writes
-- to it; only a revocation does. Covering, so a million-entry list is read
-- from the index alone, in not_after order, without a table lookup per row
-- (status is in it so that SQLite sees the index as covering).
CREATE INDEX certificates_revoked ON certificates (not_after, serial, revoked_at, revocation_reason, status)
    WHERE status = 'revoked';

-- +goose Down
DROP INDEX certificates_revoked;
DROP TABLE crls;
