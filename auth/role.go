package auth

import "github.com/gatehouse-iot/gatehouse/fault"

// Role is what an admin token or a web UI user may do. The store persists
// it as a plain string (store must not import auth); this package converts
// at its boundary, so an unknown stored value simply ranks below viewer.
type Role string

// Admin roles, from most to least privileged.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleViewer   Role = "viewer"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r may do what needs min. Viewers may read;
// operators and admins may change things; only admins manage users.
func (r Role) AtLeast(min Role) bool { return r.rank() >= min.rank() && r.rank() > 0 && min.rank() > 0 }

// Require is AtLeast as an error: fault.PermissionDenied naming both roles,
// worded alike for bearer tokens and browser sessions.
func (r Role) Require(min Role) error {
	if !r.AtLeast(min) {
		return fault.New(fault.PermissionDenied, "role %s may not do this (needs %s)", r, min)
	}
	return nil
}

var errBadRole = fault.New(fault.InvalidArgument, "role must be admin, operator or viewer")

func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}
