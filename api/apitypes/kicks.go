package apitypes

import "time"

// SessionKick is, for one device and broker, whether the broker was told
// to cut the device's live sessions. NextAttemptAt is present until the
// kick is done; DoneAt once it is.
type SessionKick struct {
	Device        string     `json:"device"`
	Broker        string     `json:"broker"`
	Status        string     `json:"status"`
	Reason        string     `json:"reason"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	RequestedAt   time.Time  `json:"requested_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DoneAt        *time.Time `json:"done_at,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// DeviceSessions answers GET /api/v1/devices/{id}/sessions: the device's
// latest kick per broker.
type DeviceSessions struct {
	Device string        `json:"device"`
	Kicks  []SessionKick `json:"kicks"`
}

// SessionKickList answers GET /api/v1/session-kicks, with each kick
// target's last check.
type SessionKickList struct {
	Kicks   []SessionKick `json:"kicks"`
	Targets []KickTarget  `json:"targets"`
}

// KickTarget is one kick target's last reachability and credentials check.
// It mirrors kick.TargetHealth: package kick pulls in broker clients, which
// a client of these types should not have to. CheckedAt is absent until
// the first check.
type KickTarget struct {
	Broker    string    `json:"broker"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}
