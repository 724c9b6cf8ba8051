// Package enroll is the factory line: bootstrap token batches, first
// enrollment from a CSR (the device's key never leaves it), and renewal
// with the current certificate.
//
// The device proposes nothing but a public key: identity (fleet, device id),
// validity and roles come from the token and the profile.
package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Catalog reads the fleets and profiles enrollment refers to.
type Catalog interface {
	GetFleet(ctx context.Context, name string) (store.Fleet, error)
	GetProfile(ctx context.Context, name string) (store.Profile, error)
}

// Tokens stores bootstrap tokens and commits enrollments.
type Tokens interface {
	CreateTokenBatch(ctx context.Context, b store.TokenBatch, tokens []store.NewToken) (store.TokenBatch, error)
	// GetEnrollmentToken returns a token with its batch's profile.
	GetEnrollmentToken(ctx context.Context, hash string) (store.BootstrapToken, store.Profile, error)
	CompleteEnrollment(ctx context.Context, e store.Enrollment) (store.Device, error)
}

// Records reads and renews device certificates.
type Records interface {
	GetDevice(ctx context.Context, id string) (store.Device, error)
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	// RecordRenewal returns the replaced certificate as it now is:
	// superseded, or revoked at once when its profile's grace is 0.
	RecordRenewal(ctx context.Context, r store.Renewal) (store.Certificate, error)
}

// CRL republishes the certificate revocation list; Publish returns once a
// list with every revocation committed before the call is served.
type CRL interface {
	Publish(ctx context.Context) error
}

// Issuer signs and checks device certificates.
type Issuer interface {
	Issue(ctx context.Context, req ca.LeafRequest) (ca.Issued, error)
	VerifyLeaf(cert *x509.Certificate) (ca.Identity, error)
}

// Config wires the service. All interfaces are usually one *store.Store and one *ca.CA.
type Config struct {
	Catalog Catalog
	Tokens  Tokens
	Records Records
	Audit   *audit.Recorder
	Issuer  Issuer
	// MaxBatch caps tokens per batch; default 100000.
	MaxBatch int
	// MaxTTL caps a token's lifetime; default one year.
	MaxTTL time.Duration
	// CRL, when set, is republished after a renewal that revoked the
	// certificate it replaced (a profile with superseded_grace 0), within
	// CRLWait (default 15s); a slower or failed publication is finished or
	// retried by the CRL's own loop.
	CRL     CRL
	CRLWait time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service runs enrollment.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Catalog == nil || cfg.Tokens == nil || cfg.Records == nil || cfg.Audit == nil || cfg.Issuer == nil {
		return nil, errors.New("enroll: Catalog, Tokens, Records, Audit and Issuer are required")
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 100000
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 365 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CRLWait <= 0 {
		cfg.CRLWait = 15 * time.Second
	}
	return &Service{cfg: cfg}, nil
}

// BatchRequest asks for Count bootstrap tokens, or one per DeviceIDs entry.
type BatchRequest struct {
	Fleet     string
	Profile   string
	Count     int
	TTL       time.Duration
	DeviceIDs []string
	Actor     string
}

// IssuedToken is a bootstrap token in clear text; it exists only in the
// response that creates it.
type IssuedToken struct {
	Token    string
	DeviceID string
}

// Batch is a created batch and its tokens.
type Batch struct {
	store.TokenBatch
	Tokens []IssuedToken
}

// CreateBatch makes a batch of one-time bootstrap tokens and stores only their hashes.
func (s *Service) CreateBatch(ctx context.Context, req BatchRequest) (Batch, error) {
	if len(req.DeviceIDs) > 0 {
		if req.Count != 0 && req.Count != len(req.DeviceIDs) {
			return Batch{}, fault.New(fault.InvalidArgument, "count (%d) must match the number of device_ids (%d)", req.Count, len(req.DeviceIDs))
		}
		req.Count = len(req.DeviceIDs)
	}
	if req.Count < 1 || req.Count > s.cfg.MaxBatch {
		return Batch{}, fault.New(fault.InvalidArgument, "count must be between 1 and %d", s.cfg.MaxBatch)
	}
	if req.TTL <= 0 || req.TTL > s.cfg.MaxTTL {
		return Batch{}, fault.New(fault.InvalidArgument, "ttl must be positive and at most %s", s.cfg.MaxTTL)
	}
	seen := make(map[string]bool, len(req.DeviceIDs))
	for _, id := range req.DeviceIDs {
		if !ca.ValidName(id) {
			return Batch{}, fault.New(fault.InvalidArgument, "device id %q must match [A-Za-z0-9._-]{1,64}", id)
		}
		if seen[id] {
			return Batch{}, fault.New(fault.InvalidArgument, "device id %q appears twice", id)
		}
		seen[id] = true
	}
	if _, err := s.cfg.Catalog.GetFleet(ctx, req.Fleet); err != nil {
		return Batch{}, err
	}
	if _, err := s.cfg.Catalog.GetProfile(ctx, req.Profile); err != nil {
		return Batch{}, err
	}
	out := Batch{Tokens: make([]IssuedToken, req.Count)}
	hashes := make([]store.NewToken, req.Count)
	for i := range out.Tokens {
		tok := NewSecret(BootstrapPrefix)
		var dev string
		if len(req.DeviceIDs) > 0 {
			dev = req.DeviceIDs[i]
		}
		out.Tokens[i] = IssuedToken{Token: tok, DeviceID: dev}
		hashes[i] = store.NewToken{Hash: HashSecret(tok), DeviceID: dev}
	}
	b, err := s.cfg.Tokens.CreateTokenBatch(ctx, store.TokenBatch{
		ID: uuid.Must(uuid.NewV7()).String(), Fleet: req.Fleet, Profile: req.Profile,
		ExpiresAt: s.cfg.Now().Add(req.TTL), CreatedBy: req.Actor,
	}, hashes)
	if err != nil {
		return Batch{}, err
	}
	out.TokenBatch = b
	s.cfg.Audit.Record(ctx, req.Actor, "token_batch.create", "token_batch", b.ID, fmt.Sprintf("fleet=%s profile=%s count=%d", b.Fleet, b.Profile, b.Count))
	return out, nil
}

// Request is a first enrollment. DeviceID is honoured only for tokens that
// do not fix one; left empty, Gatehouse names the device.
type Request struct {
	Token    string
	CSR      []byte
	DeviceID string
}

// Result is a newly issued certificate.
type Result struct {
	Device      store.Device
	Serial      string
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
}

// Enroll exchanges a bootstrap token and a CSR for a device certificate.
func (s *Service) Enroll(ctx context.Context, req Request) (Result, error) {
	if req.Token == "" {
		return Result{}, fault.New(fault.TokenInvalid, "token is required")
	}
	if req.DeviceID != "" && !ca.ValidName(req.DeviceID) {
		return Result{}, fault.New(fault.InvalidArgument, "device_id must match [A-Za-z0-9._-]{1,64}")
	}
	// The signature is verified once, by the CA, just before signing.
	csr, err := parseCSR(req.CSR, false)
	if err != nil {
		return Result{}, err
	}
	now := s.cfg.Now()
	// The batch's profile comes with the token, read in the same query.
	tok, profile, err := s.cfg.Tokens.GetEnrollmentToken(ctx, HashSecret(req.Token))
	switch {
	case err != nil:
		return Result{}, err
	case tok.UsedAt != nil:
		return Result{}, fault.New(fault.TokenUsed, "bootstrap token was already used")
	case tok.BatchRevokedAt != nil:
		return Result{}, fault.New(fault.TokenRevoked, "bootstrap token's batch was revoked")
	case !now.Before(tok.ExpiresAt):
		return Result{}, fault.New(fault.TokenExpired, "bootstrap token has expired")
	}
	deviceID := tok.DeviceID
	switch {
	case deviceID != "" && req.DeviceID != "" && req.DeviceID != deviceID:
		return Result{}, fault.New(fault.InvalidArgument, "this token enrolls device %q only", deviceID)
	case deviceID == "" && req.DeviceID != "":
		// A token that names no device may create one, never claim one: a
		// pre-registered device is reserved for a token fixed to its id
		// (Enrollment.ClaimPending below).
		deviceID = req.DeviceID
	case deviceID == "":
		deviceID = newDeviceID()
	}
	if err := keyAllowed(profile.KeyTypes, csr.PublicKey); err != nil {
		return Result{}, err
	}
	iss, err := s.cfg.Issuer.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: tok.Fleet, DeviceID: deviceID,
		Validity: profile.Validity, Roles: profile.Roles})
	if err != nil {
		return Result{}, err
	}
	// The certificate is signed but not yet anyone's: it is released only if
	// this transaction wins the token. A loser's certificate is discarded
	// unseen, so a replayed token can never yield a second identity.
	// The audit event commits with the enrollment, or not at all.
	dev, err := s.cfg.Tokens.CompleteEnrollment(ctx, store.Enrollment{
		TokenHash:    tok.Hash,
		Device:       store.Device{ID: deviceID, Fleet: tok.Fleet, Profile: tok.Profile},
		Cert:         certRecord(deviceID, iss.Leaf),
		At:           now,
		ClaimPending: tok.DeviceID != "",
		Audit: &store.AuditEvent{Actor: "device:" + deviceID, Action: "device.enroll", ObjectType: "device",
			ObjectID: deviceID, Detail: "batch=" + tok.BatchID + " serial=" + ca.SerialHex(iss.Leaf.SerialNumber)},
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Device: dev, Serial: ca.SerialHex(iss.Leaf.SerialNumber), Certificate: iss.Leaf, Chain: iss.Chain}, nil
}

// RenewRequest renews a device certificate. Current is the certificate in
// use. With KeyProven (the caller authenticated Current over mutual TLS) the
// CSR may carry a new key; otherwise the CSR must be signed by Current's key,
// which is the proof of possession.
type RenewRequest struct {
	Current   *x509.Certificate
	CSR       []byte
	KeyProven bool
}

// Renew issues a new certificate for the same identity within the renewal window.
func (s *Service) Renew(ctx context.Context, req RenewRequest) (Result, error) {
	if req.Current == nil {
		return Result{}, fault.New(fault.Unauthenticated, "the current certificate is required")
	}
	id, err := s.cfg.Issuer.VerifyLeaf(req.Current)
	if err != nil {
		return Result{}, err
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return Result{}, err
	}
	if !req.KeyProven && !samePublicKey(csr.PublicKey, req.Current.PublicKey) {
		return Result{}, fault.New(fault.Unauthenticated, "csr must be signed by the current certificate's key")
	}
	serial := ca.SerialHex(req.Current.SerialNumber)
	rec, err := s.cfg.Records.GetCertificate(ctx, serial)
	if err != nil {
		if fault.Is(err, fault.NotFound) {
			return Result{}, fault.New(fault.CertInvalid, "certificate is not known to Gatehouse")
		}
		return Result{}, err
	}
	if rec.DeviceID != id.DeviceID {
		return Result{}, fault.New(fault.CertInvalid, "certificate does not belong to device %s", id.DeviceID)
	}
	switch rec.Status {
	case store.CertRevoked:
		return Result{}, fault.New(fault.CertInvalid, "certificate is revoked")
	case store.CertSuperseded:
		return Result{}, fault.New(fault.CertInvalid, "certificate was already renewed")
	}
	dev, err := s.cfg.Records.GetDevice(ctx, id.DeviceID)
	if err != nil {
		return Result{}, err
	}
	if dev.Status != store.DeviceActive {
		return Result{}, fault.New(fault.DeviceNotActive, "device %s is %s", dev.ID, dev.Status)
	}
	profile, err := s.cfg.Catalog.GetProfile(ctx, dev.Profile)
	if err != nil {
		return Result{}, err
	}
	now := s.cfg.Now()
	if opens := req.Current.NotAfter.Add(-profile.RenewWindow); now.Before(opens) {
		return Result{}, fault.New(fault.RenewalTooEarly, "renewal opens at %s", opens.UTC().Format(time.RFC3339))
	}
	if err := keyAllowed(profile.KeyTypes, csr.PublicKey); err != nil {
		return Result{}, err
	}
	iss, err := s.cfg.Issuer.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: dev.Fleet, DeviceID: dev.ID,
		Validity: profile.Validity, Roles: profile.Roles})
	if err != nil {
		return Result{}, err
	}
	old, err := s.cfg.Records.RecordRenewal(ctx, store.Renewal{DeviceID: dev.ID, OldSerial: serial,
		Cert: certRecord(dev.ID, iss.Leaf)})
	if err != nil {
		return Result{}, err
	}
	detail := "old=" + serial + " new=" + ca.SerialHex(iss.Leaf.SerialNumber)
	switch {
	case old.Status == store.CertRevoked:
		detail += fmt.Sprintf(" old_revoked=superseded(%d)", store.ReasonSuperseded)
	case old.RevokeAfter != nil:
		detail += " old_revoked_after=" + old.RevokeAfter.UTC().Format(time.RFC3339)
	}
	s.cfg.Audit.Record(ctx, "device:"+dev.ID, "device.renew", "device", dev.ID, detail)
	if old.Status == store.CertRevoked && s.cfg.CRL != nil {
		// The renewal is committed and OCSP already answers revoked; the
		// CRL follows. Its failure does not undo the renewal the device
		// needs, and the CRL's loop retries it.
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CRLWait)
		_ = s.cfg.CRL.Publish(cctx)
		cancel()
	}
	return Result{Device: dev, Serial: ca.SerialHex(iss.Leaf.SerialNumber), Certificate: iss.Leaf, Chain: iss.Chain}, nil
}

func certRecord(deviceID string, leaf *x509.Certificate) store.Certificate {
	fp := sha256.Sum256(leaf.Raw)
	return store.Certificate{
		Serial:      ca.SerialHex(leaf.SerialNumber),
		Fingerprint: hex.EncodeToString(fp[:]),
		DeviceID:    deviceID,
		NotBefore:   leaf.NotBefore,
		NotAfter:    leaf.NotAfter,
		PEM:         string(ca.EncodePEM(leaf)),
	}
}

func newDeviceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "dev-" + hex.EncodeToString(b[:])
}

func samePublicKey(a, b any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
