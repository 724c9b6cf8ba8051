-- +goose Up
-- EST options of a profile. server_keygen (0 or 1; the schema has no
-- BOOLEAN) lets EST serverkeygen generate a device's key on the server;
-- off by default, since the key then exists outside the device for a
-- moment. device_id_from says where an enrollment's device id comes from
-- when the token does not fix one: 'token' (the request, else Gatehouse
-- names the device) or 'csr_serial_number' (the CSR subject's
-- serialNumber, 2.5.4.5, as device stacks and IDevIDs carry it).
ALTER TABLE profiles ADD COLUMN server_keygen INTEGER NOT NULL DEFAULT 0
    CHECK (server_keygen IN (0, 1));
ALTER TABLE profiles ADD COLUMN device_id_from TEXT NOT NULL DEFAULT 'token'
    CHECK (device_id_from IN ('token', 'csr_serial_number'));

-- +goose Down
ALTER TABLE profiles DROP COLUMN device_id_from;
ALTER TABLE profiles DROP COLUMN server_keygen;
