package api_test

import (
	"net/http"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestAuditFailureFailsChange: when the audit event of a change cannot be
// written (a trigger refuses audit inserts), the API answers a server error
// and the change is not made, on every backend.
func TestAuditFailureFailsChange(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			s := newStack(t, dsn)
			s.call(t, "POST", "/api/v1/fleets", s.admin, map[string]any{"name": "kept"}, http.StatusCreated, nil)
			s.call(t, "POST", "/api/v1/devices", s.admin, map[string]any{"id": "dev-kept", "fleet": "default",
				"profile": "default"}, http.StatusCreated, nil)
			testdb.FailAuditInserts(t, dsn)

			for _, c := range []struct {
				method, path string
				body         any
				// check is a request whose answer shows the change was not made.
				check  string
				status int
			}{
				{"POST", "/api/v1/fleets", map[string]any{"name": "new"}, "/api/v1/fleets/new", http.StatusNotFound},
				{"DELETE", "/api/v1/fleets/kept", nil, "/api/v1/fleets/kept", http.StatusOK},
				{"POST", "/api/v1/devices", map[string]any{"id": "dev-new", "fleet": "default", "profile": "default"},
					"/api/v1/devices/dev-new", http.StatusNotFound},
				{"DELETE", "/api/v1/devices/dev-kept", nil, "/api/v1/devices/dev-kept", http.StatusOK},
			} {
				s.call(t, c.method, c.path, s.admin, c.body, http.StatusInternalServerError, nil)
				s.call(t, "GET", c.check, s.admin, nil, c.status, nil)
			}
		})
	}
}
