package apitypes

import "time"

// AuditEvent is one row of the audit log.
type AuditEvent struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	ObjectType string    `json:"object_type"`
	ObjectID   string    `json:"object_id"`
	Detail     string    `json:"detail,omitempty"`
}

// AuditEventList answers GET /api/v1/audit.
type AuditEventList struct {
	Events []AuditEvent `json:"events"`
}

// AuditVerification answers GET /api/v1/audit/verify. A broken chain is
// an answer, not an error: OK false and FirstBroken names the first row
// that does not verify; FirstBroken is null while the chain holds.
type AuditVerification struct {
	OK          bool    `json:"ok"`
	FirstBroken *string `json:"first_broken"`
	Reason      string  `json:"reason,omitempty"`
	Checked     int64   `json:"checked"`
	// HeadSeq and HeadHash are the last row that verified. Kept outside
	// Gatehouse, they let `gatehouse audit verify --expect-head` prove the
	// tail was not cut off.
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash,omitempty"`
}
