-- +goose Up
-- The web UI lists devices by fleet and status, in id order, a page at a
-- time (WHERE fleet = ? AND status = ? AND id > ? ORDER BY id LIMIT 50).
-- With (fleet, status) the database had to read every device of the pair
-- and sort them: 21 ms for a page deep into a 90k-device fleet on SQLite.
-- With id appended the page is a range read in index order. The new index
-- replaces the old one, which it covers (the dashboard's GROUP BY fleet,
-- status still reads only the index), so enrollment writes no more index
-- pages than before.
CREATE INDEX devices_fleet_status_id ON devices (fleet, status, id);
DROP INDEX devices_fleet_status;

-- +goose Down
CREATE INDEX devices_fleet_status ON devices (fleet, status);
DROP INDEX devices_fleet_status_id;
