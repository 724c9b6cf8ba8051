-- +goose Up
-- Vendor PKIs registered per fleet for IDevID enrollment (issue 15): a
-- device presenting a certificate that chains to a vendor's anchors enrolls
-- into the vendor's fleet and profile without a token. The fleet and the
-- profile cannot be deleted while a vendor refers to them. Flags are
-- INTEGER 0/1 (the migrations are BOOLEAN-free). allowlist_size is kept
-- with the vendor, written in the transaction that replaces the list, so a
-- list view never counts a million rows.
CREATE TABLE idevid_vendors (
    fleet             TEXT NOT NULL REFERENCES fleets (name),
    name              TEXT NOT NULL,
    profile           TEXT NOT NULL REFERENCES profiles (name),
    anchors_pem       TEXT NOT NULL,
    intermediates_pem TEXT NOT NULL DEFAULT '',
    id_from           TEXT NOT NULL,
    id_prefix         TEXT NOT NULL DEFAULT '',
    allow_reenroll    INTEGER NOT NULL DEFAULT 0 CHECK (allow_reenroll IN (0, 1)),
    require_allowlist INTEGER NOT NULL DEFAULT 0 CHECK (require_allowlist IN (0, 1)),
    allowlist_size    BIGINT NOT NULL DEFAULT 0 CHECK (allowlist_size >= 0),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (fleet, name)
);
CREATE INDEX idevid_vendors_profile ON idevid_vendors (profile);

-- The newest CRL per issuer of a vendor. number is the CRL number as 40
-- lower-case hex digits (RFC 5280 allows 20 octets, more than a BIGINT),
-- zero-padded so that text order is numeric order and one conditional
-- upsert can refuse an older list; '' when the CRL carries no number. The
-- DER is base64 TEXT, as in crls.
CREATE TABLE idevid_vendor_crls (
    fleet       TEXT NOT NULL,
    vendor      TEXT NOT NULL,
    issuer_key  TEXT NOT NULL,
    number      TEXT NOT NULL,
    this_update BIGINT NOT NULL,
    der         TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (fleet, vendor, issuer_key),
    FOREIGN KEY (fleet, vendor) REFERENCES idevid_vendors (fleet, name) ON DELETE CASCADE
);

-- IDevID serials a vendor's devices must be on when the vendor requires its
-- allow-list: normalised hex (idevid.NormalizeSerial). The primary key is
-- the lookup of an enrollment. No foreign key: checking one per row made a
-- million-serial import three times slower on PostgreSQL; the store writes
-- rows only under the vendor's row lock and deletes them with the vendor
-- (store.ReplaceIDevIDAllowList, DeleteIDevIDVendor).
CREATE TABLE idevid_allowlist (
    fleet  TEXT NOT NULL,
    vendor TEXT NOT NULL,
    serial TEXT NOT NULL,
    PRIMARY KEY (fleet, vendor, serial)
);

-- +goose Down
DROP TABLE idevid_allowlist;
DROP TABLE idevid_vendor_crls;
DROP INDEX idevid_vendors_profile;
DROP TABLE idevid_vendors;
