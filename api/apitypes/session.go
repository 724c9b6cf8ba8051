package apitypes

import "time"

// LoginRequest is the body of POST /api/v1/session.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// PasswordChange is the body of POST /api/v1/session/password.
type PasswordChange struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// SessionUser is who a browser session belongs to. Role is admin,
// operator or viewer.
type SessionUser struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

// Session answers POST and GET /api/v1/session. CSRFToken goes in the
// X-CSRF-Token header of every unsafe request made with the cookie.
type Session struct {
	User      SessionUser `json:"user"`
	CSRFToken string      `json:"csrf_token"`
	ExpiresAt time.Time   `json:"expires_at"`
}

// User is a web UI user, never with its password hash. DisabledAt and
// LastLoginAt are present only once the event has happened.
type User struct {
	Username    string     `json:"username"`
	Role        string     `json:"role"`
	Disabled    bool       `json:"disabled"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	DisabledAt  *time.Time `json:"disabled_at,omitempty"`
	LastLoginAt *time.Time `json:"last_login_at,omitempty"`
}

// UserList answers GET /api/v1/users.
type UserList struct {
	Users []User `json:"users"`
}

// UserRequest is the body of POST /api/v1/users.
type UserRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

// UserUpdate is the body of PATCH /api/v1/users/{username}; nil fields
// are left unchanged.
type UserUpdate struct {
	Role     *string `json:"role"`
	Password *string `json:"password"`
	Disabled *bool   `json:"disabled"`
}
