package store_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// backendCase is one store test run on each backend.
type backendCase struct {
	name string
	run  func(t *testing.T, backend string)
}

// onEveryBackend runs each case as backend/name on SQLite and, when
// available, PostgreSQL.
func onEveryBackend(t *testing.T, cases []backendCase) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, backend) })
			}
		})
	}
}
