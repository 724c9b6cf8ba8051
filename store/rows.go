package store

import "encoding/json"

// Rows mirror the tables in package migrations. They never leave the store.

type fleetRow struct {
	Name        string `gorm:"column:name;primaryKey"`
	Description string `gorm:"column:description"`
	CreatedAt   int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt   int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (fleetRow) TableName() string { return "fleets" }

func (r fleetRow) domain() Fleet {
	return Fleet{Name: r.Name, Description: r.Description, CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
}

type profileRow struct {
	Name               string `gorm:"column:name;primaryKey"`
	KeyTypes           string `gorm:"column:key_types"`
	ValiditySeconds    int64  `gorm:"column:validity_seconds"`
	RenewWindowSeconds int64  `gorm:"column:renew_window_seconds"`
	// SupersededGraceSeconds is migrations/00009.
	SupersededGraceSeconds int64 `gorm:"column:superseded_grace_seconds"`
	// RenewAfterExpirySeconds is migrations/00015.
	RenewAfterExpirySeconds int64 `gorm:"column:renew_after_expiry_seconds"`
	// ServerKeygen (0 or 1) and DeviceIDFrom are migrations/00016.
	ServerKeygen int64  `gorm:"column:server_keygen"`
	DeviceIDFrom string `gorm:"column:device_id_from"`
	Roles        string `gorm:"column:roles"`
	CreatedAt    int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt    int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (profileRow) TableName() string { return "profiles" }

// flag is a boolean as the schema stores it (no BOOLEAN: migrations.go).
func flag(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (r profileRow) domain() Profile {
	return Profile{
		Name: r.Name, KeyTypes: splitList(r.KeyTypes), Roles: splitList(r.Roles),
		Validity:         secs(r.ValiditySeconds),
		RenewWindow:      secs(r.RenewWindowSeconds),
		SupersededGrace:  new(secs(r.SupersededGraceSeconds)),
		RenewAfterExpiry: new(secs(r.RenewAfterExpirySeconds)),
		ServerKeygen:     new(r.ServerKeygen != 0),
		DeviceIDFrom:     r.DeviceIDFrom,
		CreatedAt:        fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt),
	}
}

type deviceRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	Fleet     string `gorm:"column:fleet"`
	Profile   string `gorm:"column:profile"`
	Status    string `gorm:"column:status"`
	Labels    string `gorm:"column:labels"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (deviceRow) TableName() string { return "devices" }

func (r deviceRow) domain() Device {
	d := Device{ID: r.ID, Fleet: r.Fleet, Profile: r.Profile, Status: DeviceStatus(r.Status),
		CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
	if r.Labels != "" && r.Labels != "{}" {
		// Labels are written only by this package, from a map; a decode
		// failure would mean hand-edited data, which we show as no labels.
		_ = json.Unmarshal([]byte(r.Labels), &d.Labels)
	}
	return d
}

func newDeviceRow(d Device) deviceRow {
	labels := "{}"
	if len(d.Labels) > 0 {
		b, _ := json.Marshal(d.Labels) // a map[string]string always marshals
		labels = string(b)
	}
	return deviceRow{ID: d.ID, Fleet: d.Fleet, Profile: d.Profile, Status: string(d.Status), Labels: labels,
		CreatedAt: ms(d.CreatedAt), UpdatedAt: ms(d.UpdatedAt)}
}

type certRow struct {
	Serial           string `gorm:"column:serial;primaryKey"`
	Fingerprint      string `gorm:"column:fingerprint"`
	DeviceID         string `gorm:"column:device_id"`
	NotBefore        int64  `gorm:"column:not_before"`
	NotAfter         int64  `gorm:"column:not_after"`
	Status           string `gorm:"column:status"`
	PEM              string `gorm:"column:pem"`
	RevokedAt        *int64 `gorm:"column:revoked_at"`
	RevocationReason *int   `gorm:"column:revocation_reason"`
	CreatedAt        int64  `gorm:"column:created_at;autoCreateTime:false"`
	RevokeAfter      *int64 `gorm:"column:revoke_after"`
}

func (certRow) TableName() string { return "certificates" }

func (r certRow) domain() Certificate {
	c := Certificate{Serial: r.Serial, Fingerprint: r.Fingerprint, DeviceID: r.DeviceID,
		NotBefore: fromMS(r.NotBefore), NotAfter: fromMS(r.NotAfter), Status: CertStatus(r.Status),
		PEM: r.PEM, RevokedAt: fromOptMS(r.RevokedAt), CreatedAt: fromMS(r.CreatedAt), RevokeAfter: fromOptMS(r.RevokeAfter)}
	if r.RevocationReason != nil {
		c.RevocationReason = *r.RevocationReason
	}
	return c
}

// discardedRow is a row of discarded_certificates (DiscardCertificate).
type discardedRow struct {
	Serial           string `gorm:"column:serial;primaryKey"`
	Fingerprint      string `gorm:"column:fingerprint"`
	DeviceID         string `gorm:"column:device_id"`
	NotBefore        int64  `gorm:"column:not_before"`
	NotAfter         int64  `gorm:"column:not_after"`
	PEM              string `gorm:"column:pem"`
	RevokedAt        int64  `gorm:"column:revoked_at"`
	RevocationReason int    `gorm:"column:revocation_reason"`
	CreatedAt        int64  `gorm:"column:created_at;autoCreateTime:false"`
}

func (discardedRow) TableName() string { return "discarded_certificates" }

func (r discardedRow) domain() Certificate {
	rev := fromMS(r.RevokedAt)
	return Certificate{Serial: r.Serial, Fingerprint: r.Fingerprint, DeviceID: r.DeviceID,
		NotBefore: fromMS(r.NotBefore), NotAfter: fromMS(r.NotAfter), Status: CertRevoked, PEM: r.PEM,
		RevokedAt: &rev, RevocationReason: r.RevocationReason, CreatedAt: fromMS(r.CreatedAt), Discarded: true}
}

func newCertRow(c Certificate) certRow {
	r := certRow{Serial: c.Serial, Fingerprint: c.Fingerprint, DeviceID: c.DeviceID,
		NotBefore: ms(c.NotBefore), NotAfter: ms(c.NotAfter), Status: string(c.Status), PEM: c.PEM,
		RevokedAt: optMS(c.RevokedAt), CreatedAt: ms(c.CreatedAt)}
	if c.RevokedAt != nil {
		reason := c.RevocationReason
		r.RevocationReason = &reason
	}
	return r
}

type batchRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	Fleet     string `gorm:"column:fleet"`
	Profile   string `gorm:"column:profile"`
	Count     int    `gorm:"column:count"`
	ExpiresAt int64  `gorm:"column:expires_at"`
	CreatedBy string `gorm:"column:created_by"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
	RevokedAt *int64 `gorm:"column:revoked_at"`
}

func (batchRow) TableName() string { return "token_batches" }

type tokenRow struct {
	Hash      string  `gorm:"column:hash;primaryKey"`
	BatchID   string  `gorm:"column:batch_id"`
	DeviceID  *string `gorm:"column:device_id"`
	ExpiresAt int64   `gorm:"column:expires_at"`
	UsedAt    *int64  `gorm:"column:used_at"`
	UsedBy    *string `gorm:"column:used_by"`
}

func (tokenRow) TableName() string { return "bootstrap_tokens" }

type adminTokenRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	Name      string `gorm:"column:name"`
	Hash      string `gorm:"column:hash"`
	Role      string `gorm:"column:role"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
	RevokedAt *int64 `gorm:"column:revoked_at"`
}

func (adminTokenRow) TableName() string { return "admin_tokens" }

func (r adminTokenRow) domain() AdminToken {
	return AdminToken{ID: r.ID, Name: r.Name, Hash: r.Hash, Role: r.Role,
		CreatedAt: fromMS(r.CreatedAt), RevokedAt: fromOptMS(r.RevokedAt)}
}

type auditRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	At         int64  `gorm:"column:at"`
	Actor      string `gorm:"column:actor"`
	Action     string `gorm:"column:action"`
	ObjectType string `gorm:"column:object_type"`
	ObjectID   string `gorm:"column:object_id"`
	Detail     string `gorm:"column:detail"`
	// The chain (auditchain.go); NULL on rows from before it.
	Seq      *int64  `gorm:"column:seq"`
	PrevHash *string `gorm:"column:prev_hash"`
	Hash     *string `gorm:"column:hash"`
}

func (auditRow) TableName() string { return "audit_events" }

func (r auditRow) domain() AuditEvent {
	return AuditEvent{ID: r.ID, At: fromMS(r.At), Actor: r.Actor, Action: r.Action,
		ObjectType: r.ObjectType, ObjectID: r.ObjectID, Detail: r.Detail}
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
