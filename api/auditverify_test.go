package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestAuditVerifyEndpoint: a viewer reads the chain's state; after a row is
// edited in the database it names that row. On SQLite and PostgreSQL.
func TestAuditVerifyEndpoint(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			s := newStack(t, dsn)
			s.call(t, http.MethodPost, "/api/v1/fleets", s.admin, map[string]any{"name": "spare"}, http.StatusCreated, nil)
			var v apitypes.AuditVerification
			s.call(t, http.MethodGet, "/api/v1/audit/verify", s.viewer, nil, http.StatusOK, &v)
			if !v.OK || v.FirstBroken != nil || v.Checked == 0 {
				t.Fatalf("intact chain: %+v", v)
			}
			driver, q := "sqlite", `UPDATE audit_events SET detail = 'x' WHERE action = 'fleet.create' AND object_id = ?`
			if backend == "postgres" {
				driver, q = "pgx", `UPDATE audit_events SET detail = 'x' WHERE action = 'fleet.create' AND object_id = $1`
			}
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var id string
			if err := db.QueryRowContext(context.Background(),
				`SELECT id FROM audit_events WHERE action = 'fleet.create' AND object_id = 'spare'`).Scan(&id); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(context.Background(), q, "spare"); err != nil {
				t.Fatal(err)
			}
			s.call(t, http.MethodGet, "/api/v1/audit/verify", s.viewer, nil, http.StatusOK, &v)
			if v.OK || v.FirstBroken == nil || *v.FirstBroken != id || v.Reason != "hash" {
				t.Fatalf("edited chain: %+v, want first_broken %s", v, id)
			}
			s.call(t, http.MethodGet, "/api/v1/audit/verify?since=nope", s.viewer, nil, http.StatusBadRequest, nil)
		})
	}
}
