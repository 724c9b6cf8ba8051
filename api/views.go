package api

import (
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/store"
)

// JSON shapes of the API. Durations are Go duration strings ("720h0m0s")
// and times RFC 3339 in UTC.

type fleetView struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func viewFleet(f store.Fleet) fleetView {
	return fleetView{Name: f.Name, Description: f.Description, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt}
}

type profileView struct {
	Name            string    `json:"name"`
	KeyTypes        []string  `json:"key_types"`
	Validity        string    `json:"validity"`
	RenewWindow     string    `json:"renew_window"`
	SupersededGrace string    `json:"superseded_grace"`
	Roles           []string  `json:"roles"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

func viewProfile(p store.Profile) profileView {
	return profileView{Name: p.Name, KeyTypes: nonNil(p.KeyTypes), Validity: p.Validity.String(),
		RenewWindow: p.RenewWindow.String(), SupersededGrace: p.Grace().String(), Roles: nonNil(p.Roles),
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

type deviceView struct {
	ID        string            `json:"id"`
	Fleet     string            `json:"fleet"`
	Profile   string            `json:"profile"`
	Status    string            `json:"status"`
	Identity  string            `json:"identity"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

func viewDevice(d store.Device) deviceView {
	labels := d.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return deviceView{ID: d.ID, Fleet: d.Fleet, Profile: d.Profile, Status: string(d.Status),
		Identity: ca.IdentityURI(d.Fleet, d.ID), Labels: labels, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

type certView struct {
	Serial           string     `json:"serial"`
	Fingerprint      string     `json:"sha256_fingerprint"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	Status           string     `json:"status"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason *int       `json:"revocation_reason,omitempty"`
	Certificate      string     `json:"certificate"`
}

func viewCert(c store.Certificate) certView {
	v := certView{Serial: c.Serial, Fingerprint: c.Fingerprint, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Status: string(c.Status), RevokedAt: c.RevokedAt, Certificate: c.PEM}
	if c.RevokedAt != nil {
		r := c.RevocationReason
		v.RevocationReason = &r
	}
	return v
}

type batchView struct {
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

func viewBatch(b store.TokenBatch) batchView {
	return batchView{ID: b.ID, Fleet: b.Fleet, Profile: b.Profile, Count: b.Count, Used: b.Used,
		ExpiresAt: b.ExpiresAt, CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt, RevokedAt: b.RevokedAt}
}

type tokenView struct {
	Token    string `json:"token"`
	DeviceID string `json:"device_id,omitempty"`
}

type auditView struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	ObjectType string    `json:"object_type"`
	ObjectID   string    `json:"object_id"`
	Detail     string    `json:"detail,omitempty"`
}

func viewAudit(e store.AuditEvent) auditView {
	return auditView{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType,
		ObjectID: e.ObjectID, Detail: e.Detail}
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

func viewEnroll(r enroll.Result) EnrollResponse {
	return EnrollResponse{DeviceID: r.Device.ID, Fleet: r.Device.Fleet, Identity: ca.IdentityURI(r.Device.Fleet, r.Device.ID),
		Serial: r.Serial, NotAfter: r.Certificate.NotAfter.UTC(), Certificate: string(ca.EncodePEM(r.Certificate)),
		Chain: string(ca.EncodePEM(r.Chain...))}
}

// EnrollRequest is the body of POST /api/v1/enroll.
type EnrollRequest struct {
	Token    string `json:"token"`
	CSR      string `json:"csr"`
	DeviceID string `json:"device_id,omitempty"`
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

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
