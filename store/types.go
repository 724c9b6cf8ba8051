package store

import "time"

// DeviceStatus is the lifecycle state of a device.
type DeviceStatus string

// Device states. A pending device exists but holds no certificate yet.
const (
	DevicePending   DeviceStatus = "pending"
	DeviceActive    DeviceStatus = "active"
	DeviceSuspended DeviceStatus = "suspended"
	DeviceRevoked   DeviceStatus = "revoked"
)

// Valid reports whether s is a known device status.
func (s DeviceStatus) Valid() bool {
	switch s {
	case DevicePending, DeviceActive, DeviceSuspended, DeviceRevoked:
		return true
	}
	return false
}

// CertStatus is the state of one issued certificate. Expiry is not a status:
// it follows from NotAfter and the clock.
type CertStatus string

// Certificate states.
const (
	CertActive     CertStatus = "active"
	CertSuperseded CertStatus = "superseded"
	CertRevoked    CertStatus = "revoked"
)

// Fleet groups devices that share an identity namespace.
type Fleet struct {
	Name        string
	Description string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// DefaultSupersededGrace is how long a certificate replaced by a renewal
// stays good when its profile does not say.
const DefaultSupersededGrace = time.Hour

// Profile says what a device's certificate looks like.
type Profile struct {
	Name        string
	KeyTypes    []string
	Validity    time.Duration
	RenewWindow time.Duration
	// SupersededGrace is how long the certificate a renewal replaces stays
	// good before it is revoked with reason superseded; 0 revokes it with
	// the renewal. nil means DefaultSupersededGrace when a profile is
	// created and "unchanged" when one is updated; profiles read from the
	// store always have it.
	SupersededGrace *time.Duration
	// RenewAfterExpiry is how long after its expiry a certificate may
	// still be renewed, by proof of its key, if it was never revoked or
	// superseded (a sleepy device); 0 never. nil is 0 when a profile is
	// created and "unchanged" when one is updated.
	RenewAfterExpiry *time.Duration
	Roles            []string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Grace is p's superseded grace, the default when unset.
func (p Profile) Grace() time.Duration {
	if p.SupersededGrace == nil {
		return DefaultSupersededGrace
	}
	return *p.SupersededGrace
}

// AfterExpiry is p's renew_after_expiry, 0 when unset.
func (p Profile) AfterExpiry() time.Duration {
	if p.RenewAfterExpiry == nil {
		return 0
	}
	return *p.RenewAfterExpiry
}

// Device is one identity in a fleet.
type Device struct {
	ID        string
	Fleet     string
	Profile   string
	Status    DeviceStatus
	Labels    map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Certificate is the record of one issued leaf certificate.
type Certificate struct {
	Serial           string
	Fingerprint      string
	DeviceID         string
	NotBefore        time.Time
	NotAfter         time.Time
	Status           CertStatus
	PEM              string
	RevokedAt        *time.Time
	RevocationReason int
	CreatedAt        time.Time
	// RevokeAfter is when a superseded certificate is due to be revoked
	// (its profile's grace after the renewal); nil for other states.
	RevokeAfter *time.Time
}

// TokenBatch is a set of bootstrap tokens created together.
type TokenBatch struct {
	ID        string
	Fleet     string
	Profile   string
	Count     int
	Used      int
	ExpiresAt time.Time
	CreatedBy string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// BootstrapToken is a one-time enrollment token; only its hash is stored.
// Fleet, Profile and BatchRevokedAt come from its batch.
type BootstrapToken struct {
	Hash      string
	BatchID   string
	DeviceID  string
	ExpiresAt time.Time
	UsedAt    *time.Time
	UsedBy    string
	// UsedSerial is the certificate the token's enrollment issued.
	UsedSerial     string
	Fleet          string
	Profile        string
	BatchRevokedAt *time.Time
}

// NewToken is one token of a batch being created: its hash and, where the
// factory fixed it, the device id it may enroll.
type NewToken struct {
	Hash     string
	DeviceID string
}

// AdminToken is a bearer credential for the admin API.
type AdminToken struct {
	ID   string
	Name string
	Hash string
	// Role is package auth's role name, stored as is: roles and their
	// ranking are auth's business (store must not import auth).
	Role      string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// AuditEvent records who did what to which object.
type AuditEvent struct {
	ID         string
	At         time.Time
	Actor      string
	Action     string
	ObjectType string
	ObjectID   string
	Detail     string
}

// DeviceFilter narrows ListDevices. Search matches an id prefix.
type DeviceFilter struct {
	Fleet  string
	Status DeviceStatus
	Search string
	// LabelKey, when set, keeps devices whose label LabelKey is exactly
	// LabelValue.
	LabelKey   string
	LabelValue string
	After      string
	Limit      int
}

// AuditFilter narrows ListAudit.
type AuditFilter struct {
	ObjectType string
	ObjectID   string
	Actor      string
	Action     string
	// Since and Until bound the event time (inclusive, exclusive); zero
	// means unbounded.
	Since time.Time
	Until time.Time
	Limit int
}

// Enrollment is everything that one successful enrollment writes, atomically.
type Enrollment struct {
	TokenHash string
	Device    Device
	Cert      Certificate
	At        time.Time
	// ClaimPending lets the enrollment activate a pre-registered pending
	// device of the same fleet. Only a token issued for that device id may
	// set it; any other token can only create a new device.
	ClaimPending bool
	// CheckReserved refuses the enrollment (device_id_reserved) when
	// another unused, unexpired token of an unrevoked batch fixes the
	// device's id. Set for every token that does not fix the id itself.
	CheckReserved bool
	// Claim is the id of the enrollment's claim on the token (ClaimToken);
	// the enrollment commits only while the token holds it. Empty: only a
	// token never claimed.
	Claim string
	// Audit, when set, is written in the same transaction.
	Audit *AuditEvent
}

// ReasonSuperseded is RFC 5280's CRLReason superseded: the certificate was
// replaced by a renewal.
const ReasonSuperseded = 4

// Renewal records a renewed certificate that supersedes OldSerial.
type Renewal struct {
	DeviceID  string
	OldSerial string
	Cert      Certificate
	// ChallengeHash, when set, is the hash of the renewal challenge the CSR
	// carried: it is redeemed (deleted) in the renewal's transaction, and
	// the renewal fails unless it was live and issued for OldSerial.
	ChallengeHash string
	// Claim is the id of the renewal's claim on OldSerial (ClaimRenewal);
	// the renewal commits only while the certificate holds it. Empty: only
	// a certificate never claimed.
	Claim string
	// Audit, when set, is written in the renewal's transaction; the store
	// appends the old certificate's fate (revoked now, or revoked after the
	// grace) to its Detail, which only the transaction knows.
	Audit *AuditEvent
}

// RenewalChallenge is a single-use nonce issued to the holder of the
// certificate Serial for one renewal, found by its hash.
type RenewalChallenge struct {
	Hash      string
	Nonce     string
	Serial    string
	ExpiresAt time.Time
	CreatedAt time.Time
}

// IDevIDVendor is a vendor PKI registered for a fleet (table
// idevid_vendors, key (Fleet, Name)): devices presenting a certificate of
// its anchors enroll into Fleet with Profile (issue 15, package idevid).
type IDevIDVendor struct {
	Fleet, Name, Profile         string
	AnchorsPEM, IntermediatesPEM string
	// IDFrom and IDPrefix derive the device id (idevid.IDFrom).
	IDFrom, IDPrefix                string
	AllowReenroll, RequireAllowList bool
	// CRLs is the DER of the newest CRL per issuer (table
	// idevid_vendor_crls), in issuer order.
	CRLs [][]byte
	// AllowListSize is the number of serials on its allow-list (table
	// idevid_allowlist).
	AllowListSize        int
	CreatedAt, UpdatedAt time.Time
}
