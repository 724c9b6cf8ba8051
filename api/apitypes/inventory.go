package apitypes

import "time"

// Fleet is a fleet as GET /api/v1/fleets/{name} answers it.
type Fleet struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// FleetRequest is the body of POST /api/v1/fleets.
type FleetRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// FleetUpdate is the body of PATCH /api/v1/fleets/{name}; a nil field is
// left unchanged.
type FleetUpdate struct {
	Description *string `json:"description"`
}

// FleetList answers GET /api/v1/fleets.
type FleetList struct {
	Fleets []Fleet `json:"fleets"`
}

// Profile says what a device's certificate looks like. KeyTypes and Roles
// are never null.
type Profile struct {
	Name            string   `json:"name"`
	KeyTypes        []string `json:"key_types"`
	Validity        string   `json:"validity"`
	RenewWindow     string   `json:"renew_window"`
	SupersededGrace string   `json:"superseded_grace"`
	// RenewAfterExpiry is how long after expiry a certificate may still
	// renew (sleepy devices); "0s" never.
	RenewAfterExpiry string `json:"renew_after_expiry"`
	// ServerKeygen: EST serverkeygen may generate a device's key on the
	// server for a token of this profile.
	ServerKeygen bool `json:"server_keygen"`
	// DeviceIDFrom is where the device id comes from when the token fixes
	// none: "token" (the request's, else Gatehouse names the device) or
	// "csr_serial_number" (the CSR subject's serialNumber).
	DeviceIDFrom string    `json:"device_id_from"`
	Roles        []string  `json:"roles"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// ProfileRequest is the body of POST /api/v1/profiles and PUT
// /api/v1/profiles/{name}. RenewWindow left out is a third of Validity.
type ProfileRequest struct {
	Name        string   `json:"name"`
	KeyTypes    []string `json:"key_types"`
	Validity    string   `json:"validity"`
	RenewWindow string   `json:"renew_window"`
	// SupersededGrace left out is the default (1h) when a profile is
	// created and unchanged when one is updated; "0" revokes at renewal.
	SupersededGrace string `json:"superseded_grace"`
	// RenewAfterExpiry left out is 0 (never) when a profile is created and
	// unchanged when one is updated; at most 365d.
	RenewAfterExpiry string `json:"renew_after_expiry"`
	// ServerKeygen left out is false when a profile is created and
	// unchanged when one is updated.
	ServerKeygen *bool `json:"server_keygen,omitempty"`
	// DeviceIDFrom ("token" or "csr_serial_number") left out is "token"
	// when a profile is created and unchanged when one is updated.
	DeviceIDFrom string   `json:"device_id_from,omitempty"`
	Roles        []string `json:"roles"`
}

// ProfileList answers GET /api/v1/profiles.
type ProfileList struct {
	Profiles []Profile `json:"profiles"`
}

// Device is one identity in a fleet. Labels is never null.
type Device struct {
	ID        string            `json:"id"`
	Fleet     string            `json:"fleet"`
	Profile   string            `json:"profile"`
	Status    string            `json:"status"`
	Identity  string            `json:"identity"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// DeviceRequest is the body of POST /api/v1/devices.
type DeviceRequest struct {
	ID      string            `json:"id"`
	Fleet   string            `json:"fleet"`
	Profile string            `json:"profile"`
	Labels  map[string]string `json:"labels"`
}

// DeviceUpdate is the body of PATCH /api/v1/devices/{id}; nil fields are
// left unchanged.
type DeviceUpdate struct {
	Profile *string           `json:"profile"`
	Labels  map[string]string `json:"labels"`
}

// DeviceList answers GET /api/v1/devices. Next, when not empty, is the
// "after" cursor of the following page.
type DeviceList struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next"`
}

// Certificate is one certificate issued to a device. RevokedAt and
// RevocationReason are present only once it is revoked.
type Certificate struct {
	Serial           string     `json:"serial"`
	Fingerprint      string     `json:"sha256_fingerprint"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	Status           string     `json:"status"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason *int       `json:"revocation_reason,omitempty"`
	Certificate      string     `json:"certificate"`
	// Discarded: signed for an enrollment or renewal that did not commit
	// and never handed out; revoked from the start (cessationOfOperation).
	Discarded bool `json:"discarded,omitempty"`
}

// CertificateList answers GET /api/v1/devices/{id}/certificates.
type CertificateList struct {
	Certificates []Certificate `json:"certificates"`
}
