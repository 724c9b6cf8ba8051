package store_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestDeviceListUsesIndex: the UI's device page (fleet and status, id order,
// after a cursor) is a range read of devices_fleet_status_id in index order
// on both backends, not a read of the whole pair plus a sort (migration
// 00008; BenchmarkListDevicesAPI in package api measures it at 100k devices).
func TestDeviceListUsesIndex(t *testing.T) {
	const page = `SELECT * FROM devices WHERE fleet = 'f' AND status = 'active' AND id > 'dev-1' ORDER BY id LIMIT 50`
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			open(t, dsn, nil) // migrates
			driver := map[string]string{"sqlite": "sqlite", "postgres": "pgx"}[backend]
			db, err := sql.Open(driver, dsn)
			noErr(t, err)
			defer db.Close()
			ctx := context.Background()
			conn, err := db.Conn(ctx)
			noErr(t, err)
			defer conn.Close()
			explain := "EXPLAIN QUERY PLAN " + page
			if backend == "postgres" {
				// An empty table would be scanned whatever the indexes; ask
				// which index the planner can use at all.
				for _, q := range []string{"SET enable_seqscan = off", "SET enable_sort = off"} {
					_, err := conn.ExecContext(ctx, q)
					noErr(t, err)
				}
				explain = "EXPLAIN " + page
			}
			rows, err := conn.QueryContext(ctx, explain)
			noErr(t, err)
			defer rows.Close()
			cols, err := rows.Columns()
			noErr(t, err)
			var plan []string
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				noErr(t, rows.Scan(ptrs...))
				for _, v := range vals {
					switch v := v.(type) {
					case string:
						plan = append(plan, v)
					case []byte:
						plan = append(plan, string(v))
					}
				}
			}
			noErr(t, rows.Err())
			p := strings.Join(plan, "\n")
			if !strings.Contains(p, "devices_fleet_status_id") || strings.Contains(p, "TEMP B-TREE") || strings.Contains(p, "Sort") {
				t.Fatalf("device page plan:\n%s", p)
			}
		})
	}
}
