-- +goose Up
-- The lists of retired intermediates (ca rotate), stored with the current
-- one's: same number, same entries, one signature each. Encoded as
-- "<generation>:<base64 DER>" items joined by ";" ('' before any rotation),
-- so the one conditional StoreCRL keeps every list of a number together.
ALTER TABLE crls ADD COLUMN others TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE crls DROP COLUMN others;
