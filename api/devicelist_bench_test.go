package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// seedDevices writes 100k devices straight into the database: 90% in fleet
// "big", 1% in each of f1..f9 (dev-%06d, x%10 picks it); every tenth
// suspended, every tenth revoked, one in a thousand pending, the rest active.
var seedDevices = map[string][]string{
	"sqlite": {
		`INSERT INTO fleets (name, created_at, updated_at) VALUES ('big', 0, 0), ('f1', 0, 0), ('f2', 0, 0), ('f3', 0, 0),
		 ('f4', 0, 0), ('f5', 0, 0), ('f6', 0, 0), ('f7', 0, 0), ('f8', 0, 0), ('f9', 0, 0)`,
		`INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
		 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
		 SELECT printf('dev-%06d', x), CASE WHEN x % 100 BETWEEN 1 AND 9 THEN 'f' || (x % 100) ELSE 'big' END, 'default',
		        CASE WHEN x % 1000 = 2 THEN 'pending' WHEN x % 10 = 0 THEN 'suspended' WHEN x % 10 = 1 THEN 'revoked' ELSE 'active' END,
		        '{"room":"r' || (x % 50) || '"}', 0, 0 FROM c`,
	},
	"postgres": {
		`INSERT INTO fleets (name, created_at, updated_at) VALUES ('big', 0, 0), ('f1', 0, 0), ('f2', 0, 0), ('f3', 0, 0),
		 ('f4', 0, 0), ('f5', 0, 0), ('f6', 0, 0), ('f7', 0, 0), ('f8', 0, 0), ('f9', 0, 0)`,
		`INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
		 SELECT 'dev-' || lpad(x::text, 6, '0'), CASE WHEN x % 100 BETWEEN 1 AND 9 THEN 'f' || (x % 100) ELSE 'big' END, 'default',
		        CASE WHEN x % 1000 = 2 THEN 'pending' WHEN x % 10 = 0 THEN 'suspended' WHEN x % 10 = 1 THEN 'revoked' ELSE 'active' END,
		        '{"room":"r' || (x % 50) || '"}', 0, 0
		 FROM generate_series(1, 100000) AS x`,
		`ANALYZE devices`,
	},
}

// BenchmarkListDevicesAPI measures GET /api/v1/devices, the UI's device
// list, over 100k devices: the whole request (bearer check, query, JSON).
func BenchmarkListDevicesAPI(b *testing.B) {
	for _, backend := range testdb.All() {
		b.Run(backend, func(b *testing.B) {
			dsn := testdb.DSN(b, backend)
			s := newStack(b, dsn)
			db, err := sql.Open(map[string]string{"sqlite": "sqlite", "postgres": "pgx"}[backend], dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for _, q := range seedDevices[backend] {
				if _, err := db.ExecContext(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range []struct {
				name, query string
				min         int // devices on the first page at least
			}{
				{"first page", "", 50},
				{"big fleet, suspended", "fleet=big&status=suspended", 50},
				{"small fleet, active", "fleet=f3&status=active", 50},
				{"small fleet, pending (rare)", "fleet=f2&status=pending", 1},
				{"no match", "fleet=f3&status=pending", 0},
				{"prefix", "q=dev-09", 50},
				{"fleet, status and prefix", "fleet=f5&status=active&q=dev-05", 50},
				{"prefix, no match", "q=zzz", 0},
				{"label", "label=room%3Dr7", 50},
				{"deep page", "fleet=big&status=active&after=dev-099000", 50},
			} {
				b.Run(c.name, func(b *testing.B) {
					path := "/api/v1/devices?limit=50&" + c.query
					for b.Loop() {
						var out apitypes.DeviceList
						s.call(b, http.MethodGet, path, s.viewer, nil, http.StatusOK, &out)
						if len(out.Devices) < c.min {
							b.Fatalf("%s: %d devices", path, len(out.Devices))
						}
					}
				})
			}
		})
	}
}
