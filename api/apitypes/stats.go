package apitypes

import "time"

// Stats answers GET /api/v1/stats. Before apitypes it was a map: its keys
// are in alphabetical order, which the fields keep.
type Stats struct {
	Devices       DeviceCounts `json:"devices"`
	PolicyVersion int64        `json:"policy_version"`
}

// DeviceCounts counts devices by status, overall and per fleet. ByStatus
// names every status, zero included; ByFleet is never null.
type DeviceCounts struct {
	ByFleet  []FleetCount     `json:"by_fleet"`
	ByStatus map[string]int64 `json:"by_status"`
	Total    int64            `json:"total"`
}

// FleetCount is one fleet's devices by status (only the statuses it has).
type FleetCount struct {
	Fleet    string           `json:"fleet"`
	Total    int64            `json:"total"`
	ByStatus map[string]int64 `json:"by_status"`
}

// ExpiringCertificate is an active certificate close to its NotAfter, or
// (GET /api/v1/certificates?discarded=true) a discarded one: signed for an
// enrollment or renewal that did not commit, never handed out, revoked
// with RevocationReason 5 (cessationOfOperation); its device may not exist.
type ExpiringCertificate struct {
	Serial           string    `json:"serial"`
	DeviceID         string    `json:"device_id"`
	NotBefore        time.Time `json:"not_before"`
	NotAfter         time.Time `json:"not_after"`
	Status           string    `json:"status"`
	RevocationReason *int      `json:"revocation_reason,omitempty"`
	Discarded        bool      `json:"discarded,omitempty"`
}

// ExpiringCertificateList answers GET /api/v1/certificates?expiring_within=
// (or ?discarded=true).
type ExpiringCertificateList struct {
	Certificates []ExpiringCertificate `json:"certificates"`
}

// Deny is one request the decision core refused.
type Deny struct {
	At            time.Time `json:"at"`
	Device        string    `json:"device"`
	ClientID      string    `json:"client_id,omitempty"`
	Action        string    `json:"action"`
	Topic         string    `json:"topic,omitempty"`
	QoS           int       `json:"qos"`
	Retain        bool      `json:"retain"`
	Reason        string    `json:"reason"`
	PolicyVersion int64     `json:"policy_version"`
	Error         string    `json:"error,omitempty"`
}

// DenyList answers GET /api/v1/decisions/recent-denies, newest first.
type DenyList struct {
	Denies []Deny `json:"denies"`
}

// TrafficSeries answers GET /api/v1/stats/series: this replica's decisions
// and enrollments per step since its start, for the dashboard charts.
// Buckets run oldest first, one per step (60 minutes for window "hour", 24
// hours for "day"); the last is the current step, still growing; a step
// with nothing counted is zeros. DenyReasons counts over the whole window
// the requests not allowed (deny and error) by reason class, most first.
type TrafficSeries struct {
	Window      string         `json:"window"`
	StepSeconds int64          `json:"step_seconds"`
	SampledAt   *time.Time     `json:"sampled_at"`
	Buckets     []TrafficCount `json:"buckets"`
	DenyReasons []ReasonCount  `json:"deny_reasons"`
}

// TrafficCount is one step of TrafficSeries. Enrolled and Renewed count
// successes; EnrollFailed counts failed enrollments and renewals.
type TrafficCount struct {
	Start        time.Time `json:"start"`
	Allow        uint64    `json:"allow"`
	Deny         uint64    `json:"deny"`
	Error        uint64    `json:"error"`
	Enrolled     uint64    `json:"enrolled"`
	Renewed      uint64    `json:"renewed"`
	EnrollFailed uint64    `json:"enroll_failed"`
}

// ReasonCount is how many requests one deny reason class refused.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}
