package auth_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/auth"
)

// An unknown required role is a mistake in the caller: no role meets it,
// not even admin (fails closed).
func TestAtLeastUnknownMinimum(t *testing.T) {
	for _, r := range []auth.Role{auth.RoleAdmin, auth.RoleOperator, auth.RoleViewer, "bogus"} {
		if r.AtLeast("superuser") {
			t.Errorf("%q meets an unknown minimum role", r)
		}
	}
	if !auth.RoleAdmin.AtLeast(auth.RoleViewer) || auth.RoleViewer.AtLeast(auth.RoleOperator) {
		t.Error("known roles no longer rank")
	}
}
