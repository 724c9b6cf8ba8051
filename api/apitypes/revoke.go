package apitypes

import "time"

// RevokeRequest is the body of the revoke, suspend and reinstate calls.
// Reason is an RFC 5280 reason name (revocations only).
type RevokeRequest struct {
	Reason string `json:"reason"`
	Note   string `json:"note"`
}

// A change that is committed while a follow-up (decision-core refresh,
// session kick, CRL) lags is a success: 200 with the lagging parts listed in
// Warnings, not a 5xx that would read as "not revoked". Each follow-up
// catches up by itself; repeating the call is harmless.

// DeviceRevocation answers POST /api/v1/devices/{id}/revoke.
// RevokedSerials is never null.
type DeviceRevocation struct {
	Device         string   `json:"device"`
	RevokedSerials []string `json:"revoked_serials"`
	Status         string   `json:"status"`
	Warnings       []string `json:"warnings,omitempty"`
}

// CertificateResult answers POST /api/v1/certificates/{serial}/revoke: the
// certificate after the change.
type CertificateResult struct {
	Certificate
	Warnings []string `json:"warnings,omitempty"`
}

// DeviceResult answers suspend and reinstate: the device after the change.
type DeviceResult struct {
	Device
	Warnings []string `json:"warnings,omitempty"`
}

// RevocationJob is a bulk revocation job. Done counts the devices processed
// so far (of Total); Revoked, those the job changed.
type RevocationJob struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	BatchID   string    `json:"batch_id,omitempty"`
	Reason    string    `json:"reason"`
	Note      string    `json:"note,omitempty"`
	Actor     string    `json:"actor"`
	Status    string    `json:"status"`
	Total     int64     `json:"total"`
	Done      int64     `json:"done"`
	Revoked   int64     `json:"revoked"`
	Cursor    string    `json:"cursor,omitempty"`
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RevocationJobList answers GET /api/v1/revocation-jobs.
type RevocationJobList struct {
	Jobs []RevocationJob `json:"jobs"`
}

// CRLStatus answers GET /api/v1/crl: the installed list and its upkeep.
// The times are null until the event has happened once.
type CRLStatus struct {
	Number        int64      `json:"number"`
	ThisUpdate    *time.Time `json:"this_update"`
	NextUpdate    *time.Time `json:"next_update"`
	Entries       int        `json:"entries"`
	File          string     `json:"file,omitempty"`
	FileWrittenAt *time.Time `json:"file_written_at"`
	ReloadCommand bool       `json:"reload_command"`
	LastReload    *CRLReload `json:"last_reload"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

// CRLReload is the outcome of the last CRL reload command.
type CRLReload struct {
	At         time.Time `json:"at"`
	Number     int64     `json:"number"`
	DurationMS int64     `json:"duration_ms"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Output     string    `json:"output,omitempty"`
}
