-- +goose Up
-- No query reads certificates by not_after (expiry is judged in Go from the
-- rows a device or serial lookup returns), and every index is one more page
-- each enrollment writes to the SQLite WAL: this one was a fifteenth of an
-- enrollment's commit. Recreate it with the query that needs it.
DROP INDEX certificates_not_after;

-- +goose Down
CREATE INDEX certificates_not_after ON certificates (not_after);
