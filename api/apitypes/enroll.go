package apitypes

import "time"

// TokenBatch is a batch of bootstrap tokens, without the tokens.
type TokenBatch struct {
	ID        string     `json:"id"`
	Fleet     string     `json:"fleet"`
	Profile   string     `json:"profile"`
	Count     int        `json:"count"`
	Used      int        `json:"used"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// TokenBatchList answers GET /api/v1/token-batches.
type TokenBatchList struct {
	TokenBatches []TokenBatch `json:"token_batches"`
}

// Token is one bootstrap token, bound to DeviceID when the batch named
// its devices.
type Token struct {
	Token    string `json:"token"`
	DeviceID string `json:"device_id,omitempty"`
}

// BatchRequest is the body of POST /api/v1/token-batches.
type BatchRequest struct {
	Fleet     string   `json:"fleet"`
	Profile   string   `json:"profile"`
	Count     int      `json:"count"`
	TTL       string   `json:"ttl"`
	DeviceIDs []string `json:"device_ids,omitempty"`
}

// BatchResponse carries the only copy of a batch's tokens.
type BatchResponse struct {
	Batch  TokenBatch `json:"batch"`
	Tokens []Token    `json:"tokens"`
}

// EnrollRequest is the body of POST /api/v1/enroll.
type EnrollRequest struct {
	Token    string `json:"token"`
	CSR      string `json:"csr"`
	DeviceID string `json:"device_id,omitempty"`
}

// EnrollResponse is what a device receives for an enrollment or renewal.
type EnrollResponse struct {
	DeviceID    string    `json:"device_id"`
	Fleet       string    `json:"fleet"`
	Identity    string    `json:"identity"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	Certificate string    `json:"certificate"`
	Chain       string    `json:"chain"`
}

// RenewRequest is the body of POST /api/v1/renew. Certificate is optional
// when the client authenticates with it over mutual TLS. Without mutual TLS
// the CSR carries a challenge (RenewChallengeResponse.Nonce) as its PKCS#9
// challengePassword.
type RenewRequest struct {
	Certificate string `json:"certificate,omitempty"`
	CSR         string `json:"csr"`
}

// RenewChallengeRequest is the body of POST /api/v1/renew/challenge.
// Certificate is optional over mutual TLS.
type RenewChallengeRequest struct {
	Certificate string `json:"certificate,omitempty"`
}

// RenewChallengeResponse is a single-use renewal challenge for the
// certificate asked about, redeemable until ExpiresAt.
type RenewChallengeResponse struct {
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
}
