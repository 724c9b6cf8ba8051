package store_test

import (
	"context"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestBadTextIsInvalidArgument: the API refuses NUL bytes and invalid UTF-8
// at the edge; should such text reach the store anyway, PostgreSQL's refusal
// is the caller's mistake (invalid_argument), never an internal error. SQLite
// stores such text, so there a lookup simply finds nothing.
func TestBadTextIsInvalidArgument(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s, _ := seeded(t, backend)
			ctx := context.Background()
			for _, bad := range []string{"a\x00b", "a\xffb", "\xc0\x80"} {
				_, errGet := s.GetFleet(ctx, bad)
				_, errCreate := s.CreateFleet(ctx, store.Fleet{Name: "bad-text", Description: bad}, nil)
				_, errList := s.ListDevices(ctx, store.DeviceFilter{Search: bad, Limit: 10})
				if backend == "postgres" {
					wantCode(t, errGet, fault.InvalidArgument)
					wantCode(t, errCreate, fault.InvalidArgument)
					wantCode(t, errList, fault.InvalidArgument)
					continue
				}
				wantCode(t, errGet, fault.NotFound)
				for _, err := range []error{errCreate, errList} {
					if fault.CodeOf(err) == fault.Internal {
						t.Errorf("%q: %v", bad, err)
					}
				}
				_ = s.DeleteFleet(ctx, "bad-text", nil)
			}
		})
	}
}
