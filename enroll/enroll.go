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
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/store"
)

// BootstrapPrefix starts every bootstrap token, so that a leaked one is
// recognisable (and greppable by secret scanners) without revealing
// anything about it. Admin tokens have their own (auth.TokenPrefix).
const BootstrapPrefix = "ghb_"

// Catalog reads the fleets and profiles enrollment refers to.
type Catalog interface {
	GetFleet(ctx context.Context, name string) (store.Fleet, error)
	GetProfile(ctx context.Context, name string) (store.Profile, error)
}

// Tokens stores bootstrap tokens and commits enrollments.
type Tokens interface {
	CreateTokenBatch(ctx context.Context, b store.TokenBatch, tokens []store.NewToken, audit *store.AuditEvent) (store.TokenBatch, error)
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
	// CreateRenewalChallenge returns the certificate's live challenge that
	// expires after reuseUntil, or else stores c and returns it.
	CreateRenewalChallenge(ctx context.Context, c store.RenewalChallenge, keep int, reuseUntil time.Time) (store.RenewalChallenge, error)
	GetRenewalChallenge(ctx context.Context, hash string) (store.RenewalChallenge, error)
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
	// VerifyExpiredLeaf is VerifyLeaf at the last instant of an expired
	// cert's validity (a sleepy device's renewal, sleepy.go).
	VerifyExpiredLeaf(cert *x509.Certificate) (ca.Identity, error)
	// Chain is the chain Issue returns with a leaf, for a retried enrollment.
	Chain() []*x509.Certificate
}

// Config wires the service. All interfaces are usually one *store.Store and one *ca.CA.
type Config struct {
	Catalog Catalog
	Tokens  Tokens
	Records Records
	Audit   *audit.Recorder
	Issuer  Issuer
	// Claims takes a token or certificate before Issuer signs with it.
	Claims Claims
	// ClaimTTL is how long a claim holds when its holder dies before
	// releasing it; default 30 seconds. A holder slower than that loses
	// its claim and discards what it signed.
	ClaimTTL time.Duration
	// ClaimWait is how long an enrollment waits for a concurrent one
	// holding its token; default 5 seconds.
	ClaimWait time.Duration
	// MaxBatch caps tokens per batch; default 100000.
	MaxBatch int
	// MaxTTL caps a token's lifetime; default one year.
	MaxTTL time.Duration
	// ChallengeTTL is how long a renewal challenge stays redeemable;
	// default 5 minutes.
	ChallengeTTL time.Duration
	// ChallengesPerCert caps the stored challenges of one certificate (the
	// oldest is dropped); default 8. A certificate is public, so anyone may
	// ask for its challenges: they all get the live one (Challenge), and a
	// new one is drawn only when less than half of ChallengeTTL is left, so
	// the cap is a backstop that asking alone never reaches.
	ChallengesPerCert int
	// CRL, when set, is republished after a renewal that revoked the
	// certificate it replaced (a profile with superseded_grace 0), within
	// CRLWait (default 15s); a slower or failed publication is finished or
	// retried by the CRL's own loop.
	CRL     CRL
	CRLWait time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Core, when set, is refreshed after every enrollment and renewal
	// (core.go); Log receives a refresh that failed.
	Core Core
	Log  *slog.Logger
	// Observer, when set, is told the result of every Enroll and Renew
	// (observe.go).
	Observer Observer
	// Vendors, when set, enables IDevID enrollment (idevid.go), whose
	// records IDevIDs keeps; without Vendors every IDevID is
	// idevid_unknown_vendor.
	Vendors Vendors
	IDevIDs IDevIDs
}

// Service runs enrollment.
type Service struct {
	cfg     Config
	vendors vendorCache
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Catalog == nil || cfg.Tokens == nil || cfg.Records == nil || cfg.Audit == nil || cfg.Issuer == nil || cfg.Claims == nil {
		return nil, errors.New("enroll: Catalog, Tokens, Records, Audit, Issuer and Claims are required")
	}
	if cfg.Vendors != nil && cfg.IDevIDs == nil {
		return nil, errors.New("enroll: Vendors needs IDevIDs")
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = 30 * time.Second
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = 5 * time.Second
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 100000
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 365 * 24 * time.Hour
	}
	if cfg.ChallengeTTL == 0 {
		cfg.ChallengeTTL = 5 * time.Minute
	}
	if cfg.ChallengesPerCert == 0 {
		cfg.ChallengesPerCert = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
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
		if err := deviceid.Check("device id", id); err != nil {
			return Batch{}, err
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
		tok := secret.New(BootstrapPrefix)
		var dev string
		if len(req.DeviceIDs) > 0 {
			dev = req.DeviceIDs[i]
		}
		out.Tokens[i] = IssuedToken{Token: tok, DeviceID: dev}
		hashes[i] = store.NewToken{Hash: secret.Hash(tok), DeviceID: dev}
	}
	id := uuid.Must(uuid.NewV7()).String()
	b, err := s.cfg.Tokens.CreateTokenBatch(ctx, store.TokenBatch{
		ID: id, Fleet: req.Fleet, Profile: req.Profile,
		ExpiresAt: s.cfg.Now().Add(req.TTL), CreatedBy: req.Actor,
	}, hashes, audit.Event(req.Actor, "token_batch.create", "token_batch", id,
		fmt.Sprintf("fleet=%s profile=%s count=%d", req.Fleet, req.Profile, len(hashes))))
	if err != nil {
		return Batch{}, err
	}
	out.TokenBatch = b
	return out, nil
}

// Request is a first enrollment. DeviceID is honoured only for tokens that
// do not fix one and profiles that do not take it from the CSR (it must
// then agree); left empty, Gatehouse names the device.
type Request struct {
	Token    string
	CSR      []byte
	DeviceID string
	// ServerKey says the CSR's key was generated by the server (EST
	// serverkeygen): refused unless the token's profile has server_keygen,
	// and audited. Its retry is token_used: the key of the first answer
	// was never the client's to sign with again.
	ServerKey bool
}

// Result is a newly issued certificate.
type Result struct {
	Device      store.Device
	Serial      string
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	// Repeated: the enrollment had committed before, and this retry (same
	// token, same key) got its certificate again; nothing was issued.
	Repeated bool
}

// Enroll exchanges a bootstrap token and a CSR for a device certificate.
func (s *Service) Enroll(ctx context.Context, req Request) (Result, error) {
	res, err := s.enroll(ctx, req)
	kind := KindEnroll
	if req.ServerKey {
		kind = KindServerKeygen
	}
	s.observe(kind, res, err)
	return res, err
}

func (s *Service) enroll(ctx context.Context, req Request) (Result, error) {
	if req.Token == "" {
		return Result{}, fault.New(fault.TokenInvalid, "token is required")
	}
	if req.DeviceID != "" {
		if err := deviceid.Check("device_id", req.DeviceID); err != nil {
			return Result{}, err
		}
	}
	// The signature is verified once, by the CA, just before signing.
	csr, err := parseCSR(req.CSR, false)
	if err != nil {
		return Result{}, err
	}
	now := s.cfg.Now()
	// The batch's profile comes with the token, read in the same query.
	tok, profile, err := s.cfg.Tokens.GetEnrollmentToken(ctx, secret.Hash(req.Token))
	switch {
	case err != nil:
		return Result{}, err
	case req.ServerKey && !profile.KeygenOnServer():
		// Checked here, on the profile read with the token, whatever the
		// front end checked before it generated the key.
		return Result{}, fault.New(fault.PermissionDenied, "serverkeygen is off for profile %s", profile.Name)
	case tok.UsedAt != nil:
		return s.repeat(ctx, tok, req, csr, now)
	case tok.BatchRevokedAt != nil:
		return Result{}, fault.New(fault.TokenRevoked, "bootstrap token's batch was revoked")
	case !now.Before(tok.ExpiresAt):
		return Result{}, fault.New(fault.TokenExpired, "bootstrap token has expired")
	}
	deviceID, err := deviceIDOf(tok, profile, req, csr)
	if err != nil {
		return Result{}, err
	}
	// Also a token's fixed id: one from before the grammar (say "..") is
	// refused rather than enrolled.
	if err := deviceid.Check("device id", deviceID); err != nil {
		return Result{}, err
	}
	if err := keyAllowed(profile.KeyTypes, csr.PublicKey); err != nil {
		return Result{}, err
	}
	// The token is claimed before anything is signed: of concurrent
	// requests with it only the holder of the claim signs.
	claim, err := s.claimToken(ctx, store.TokenClaim{Hash: tok.Hash, DeviceID: deviceID, Fleet: tok.Fleet,
		ClaimPending: tok.DeviceID != "", CheckReserved: tok.DeviceID == ""})
	if fault.Is(err, fault.TokenUsed) {
		return s.repeatUsed(ctx, tok.Hash, req, csr, now)
	}
	if err != nil {
		return Result{}, err
	}
	res, err := s.issueEnrollment(ctx, tok, profile, deviceID, claim.ID, csr, req.ServerKey)
	if fault.Is(err, fault.TokenUsed) {
		return s.repeatUsed(ctx, tok.Hash, req, csr, now)
	}
	return res, err
}

// issueEnrollment signs and records the enrollment of deviceID with tok,
// which it holds claim on. What it signed and could not record is
// discarded (revoked), and the claim let go.
func (s *Service) issueEnrollment(ctx context.Context, tok store.BootstrapToken, profile store.Profile, deviceID, claim string,
	csr *x509.CertificateRequest, serverKey bool) (Result, error) {
	iss, err := s.cfg.Issuer.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: tok.Fleet, DeviceID: deviceID,
		Validity: profile.Validity, Roles: profile.Roles})
	if err != nil {
		s.releaseToken(ctx, tok.Hash, claim)
		return Result{}, err
	}
	// The audit event commits with the enrollment, or not at all.
	detail := "batch=" + tok.BatchID + " serial=" + ca.SerialHex(iss.Leaf.SerialNumber)
	if serverKey {
		detail += " key=server-generated"
	}
	dev, err := s.cfg.Tokens.CompleteEnrollment(ctx, store.Enrollment{
		TokenHash: tok.Hash,
		Device:    store.Device{ID: deviceID, Fleet: tok.Fleet, Profile: tok.Profile},
		Cert:      certRecord(deviceID, iss.Leaf),
		// Stamped now, not when the request came: after waiting on a claim
		// or a slow signature, a stamp older than the sync's overlap would
		// be passed over by every replica's poll (RecordRenewal stamps at
		// commit too).
		At:           s.cfg.Now(),
		ClaimPending: tok.DeviceID != "",
		// An id fixed to another unused token is reserved for it.
		CheckReserved: tok.DeviceID == "",
		Claim:         claim,
		Audit: &store.AuditEvent{Actor: "device:" + deviceID, Action: "device.enroll", ObjectType: "device",
			ObjectID: deviceID, Detail: detail},
	})
	if err != nil {
		if !s.discard(ctx, "enrollment", deviceID, iss.Leaf, store.ClaimRef{TokenHash: tok.Hash, ID: claim}, err) {
			s.releaseToken(ctx, tok.Hash, claim)
		}
		return Result{}, err
	}
	s.refresh(ctx, "enrollment", deviceID)
	return Result{Device: dev, Serial: ca.SerialHex(iss.Leaf.SerialNumber), Certificate: iss.Leaf, Chain: iss.Chain}, nil
}

// repeatUsed answers a request whose token another enrollment used: if
// that was this device retrying (same key), it gets that certificate.
func (s *Service) repeatUsed(ctx context.Context, hash string, req Request, csr *x509.CertificateRequest, now time.Time) (Result, error) {
	tok, _, err := s.cfg.Tokens.GetEnrollmentToken(ctx, hash)
	if err != nil {
		return Result{}, err
	}
	return s.repeat(ctx, tok, req, csr, now)
}

// repeat answers an enrollment whose token is used already. A factory line
// whose reply was lost retries with the same token and the same key: it
// gets the certificate the first enrollment issued, as long as the token
// is within its TTL, its batch is not revoked, and that certificate is
// still the active certificate of an active device. Anything else, a
// different key above all, is token_used: the token enrolls one key, once.
func (s *Service) repeat(ctx context.Context, tok store.BootstrapToken, req Request, csr *x509.CertificateRequest, now time.Time) (Result, error) {
	used := fault.New(fault.TokenUsed, "bootstrap token was already used")
	if tok.UsedAt == nil || tok.UsedSerial == "" || tok.BatchRevokedAt != nil || !now.Before(tok.ExpiresAt) ||
		(req.DeviceID != "" && req.DeviceID != tok.UsedBy) {
		return Result{}, used
	}
	rec, err := s.cfg.Records.GetCertificate(ctx, tok.UsedSerial)
	if fault.Is(err, fault.NotFound) {
		return Result{}, used
	}
	if err != nil {
		return Result{}, err
	}
	if rec.Status != store.CertActive || rec.DeviceID != tok.UsedBy {
		return Result{}, used
	}
	leaf, err := ParseCertificatePEM([]byte(rec.PEM))
	if err != nil {
		return Result{}, err
	}
	// Nothing is signed on this path, so the CSR's signature is checked
	// here: only the holder of the key gets its certificate back.
	if !samePublicKey(csr.PublicKey, leaf.PublicKey) {
		return Result{}, used
	}
	if err := csr.CheckSignature(); err != nil {
		return Result{}, fault.Wrap(err, fault.CSRInvalid, "csr signature does not verify")
	}
	dev, err := s.cfg.Records.GetDevice(ctx, tok.UsedBy)
	if fault.Is(err, fault.NotFound) {
		return Result{}, used
	}
	if err != nil {
		return Result{}, err
	}
	if dev.Status != store.DeviceActive || !now.Before(leaf.NotAfter) {
		return Result{}, used
	}
	s.cfg.Audit.Record(ctx, "device:"+dev.ID, "device.enroll_repeat", "device", dev.ID, "batch="+tok.BatchID+" serial="+rec.Serial)
	return Result{Device: dev, Serial: rec.Serial, Certificate: leaf, Chain: s.cfg.Issuer.Chain(), Repeated: true}, nil
}

// RenewRequest renews a device certificate. Current is the certificate in
// use. With KeyProven (the caller authenticated Current over mutual TLS: the
// handshake proved possession just now) the CSR may carry a new key.
// Otherwise the CSR must be signed by Current's key and carry, as its
// challengePassword, a live challenge issued for Current (Challenge): a
// signature over a fresh server nonce is the proof of possession, and an
// old CSR, the enrollment's one included, proves nothing. An expired
// Current (sleepy.go) always takes the challenge path.
type RenewRequest struct {
	Current   *x509.Certificate
	CSR       []byte
	KeyProven bool
}

// Renew issues a new certificate for the same identity within the renewal
// window, or within the profile's renew_after_expiry after expiry.
func (s *Service) Renew(ctx context.Context, req RenewRequest) (Result, error) {
	cur, err := s.current(ctx, req.Current)
	if err != nil {
		s.observe(KindRenew, Result{}, err)
		return Result{}, err
	}
	kind := KindRenew
	if cur.expired {
		kind = KindRenewExpired
	}
	res, err := s.renew(ctx, req, cur)
	s.observe(kind, res, err)
	return res, err
}

// renew is Renew of cur, the checked req.Current.
func (s *Service) renew(ctx context.Context, req RenewRequest, cur current) (Result, error) {
	if cur.expired {
		// Told apart first: an expired certificate that may not renew is
		// told so, whatever its request lacks.
		if _, _, err := s.renewable(ctx, cur, req.Current); err != nil {
			return Result{}, err
		}
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return Result{}, err
	}
	// An expired certificate needs the challenge signed by its key,
	// whatever the caller says: renewing it is the sleepy-device path
	// (sleepy.go), which the profile bounds and the audit names, not a
	// mutual-TLS renewal with a new key.
	keyProven := req.KeyProven && !cur.expired
	if !keyProven && !samePublicKey(csr.PublicKey, req.Current.PublicKey) {
		return Result{}, fault.New(fault.Unauthenticated, "csr must be signed by the current certificate's key")
	}
	var challengeHash string
	if !keyProven {
		if challengeHash, err = s.checkChallenge(ctx, csr, cur.serial); err != nil {
			return Result{}, err
		}
	}
	dev, profile, err := s.renewable(ctx, cur, req.Current)
	if err != nil {
		return Result{}, err
	}
	if err := keyAllowed(profile.KeyTypes, csr.PublicKey); err != nil {
		return Result{}, err
	}
	return s.issueRenewal(ctx, dev, profile, cur, challengeHash, csr, s.cfg.Now())
}

// renewable returns the active device of cur and its profile, and checks
// that the profile lets cert renew now: within its renewal window, or,
// expired, within renew_after_expiry.
func (s *Service) renewable(ctx context.Context, cur current, cert *x509.Certificate) (store.Device, store.Profile, error) {
	dev, profile, err := s.deviceProfile(ctx, cur.id.DeviceID)
	if err != nil {
		return store.Device{}, store.Profile{}, err
	}
	now := s.cfg.Now()
	if cur.expired {
		return dev, profile, expiredRenewable(profile, cert, now)
	}
	if opens := cert.NotAfter.Add(-profile.RenewWindow); now.Before(opens) {
		return store.Device{}, store.Profile{}, fault.New(fault.RenewalTooEarly, "renewal opens at %s", opens.UTC().Format(time.RFC3339))
	}
	return dev, profile, nil
}

// deviceProfile returns device id, which must be active, and its profile.
func (s *Service) deviceProfile(ctx context.Context, id string) (store.Device, store.Profile, error) {
	dev, err := s.cfg.Records.GetDevice(ctx, id)
	if err != nil {
		return store.Device{}, store.Profile{}, err
	}
	if dev.Status != store.DeviceActive {
		return store.Device{}, store.Profile{}, fault.New(fault.DeviceNotActive, "device %s is %s", dev.ID, dev.Status)
	}
	profile, err := s.cfg.Catalog.GetProfile(ctx, dev.Profile)
	if err != nil {
		return store.Device{}, store.Profile{}, err
	}
	return dev, profile, nil
}

// issueRenewal claims the certificate cur for this renewal, signs, and
// records the renewal, which redeems the challenge (if any) and supersedes
// cur. Of concurrent renewals of one certificate (one challenge, or
// several mutual-TLS handshakes) only the claim's holder signs; the others
// are certificate_invalid. What was signed and could not be recorded is
// discarded (revoked), and the claim let go, so a retry of the same
// request renews.
func (s *Service) issueRenewal(ctx context.Context, dev store.Device, profile store.Profile, cur current, challengeHash string,
	csr *x509.CertificateRequest, now time.Time) (Result, error) {
	serial := cur.serial
	claim := s.newClaim(now)
	if err := s.cfg.Claims.ClaimRenewal(ctx, dev.ID, serial, claim, now); err != nil {
		return Result{}, err
	}
	iss, err := s.cfg.Issuer.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: dev.Fleet, DeviceID: dev.ID,
		Validity: profile.Validity, Roles: profile.Roles})
	if err != nil {
		s.releaseRenewal(ctx, serial, claim.ID)
		return Result{}, err
	}
	// The audit event commits with the renewal or not at all; the store
	// adds the old certificate's fate to its detail.
	old, err := s.cfg.Records.RecordRenewal(ctx, store.Renewal{DeviceID: dev.ID, OldSerial: serial,
		Cert: certRecord(dev.ID, iss.Leaf), ChallengeHash: challengeHash, Claim: claim.ID,
		Audit: renewAudit(dev.ID, cur, ca.SerialHex(iss.Leaf.SerialNumber))})
	if err != nil {
		if !s.discard(ctx, "renewal", dev.ID, iss.Leaf, store.ClaimRef{OldSerial: serial, ID: claim.ID}, err) {
			s.releaseRenewal(ctx, serial, claim.ID)
		}
		return Result{}, err
	}
	s.refresh(ctx, "renewal", dev.ID)
	if old.Status == store.CertRevoked {
		// The renewal is committed and OCSP already answers revoked; the
		// CRL follows. Its failure does not undo the renewal the device
		// needs, and the CRL's loop retries it.
		s.publishCRL(ctx)
	}
	return Result{Device: dev, Serial: ca.SerialHex(iss.Leaf.SerialNumber), Certificate: iss.Leaf, Chain: iss.Chain}, nil
}

// Challenge is a renewal challenge as handed to a device.
type Challenge struct {
	Nonce     string
	ExpiresAt time.Time
}

// Challenge issues a single-use nonce for renewing current over plain HTTP.
// The certificate must be Gatehouse's, active, and its device's; no secret
// is needed to ask (the nonce is worthless without the key that signs it
// into the CSR). So asking must not cost the device its challenge: every
// asker gets the certificate's live challenge, as long as at least half of
// its lifetime is left, and only then a new one.
func (s *Service) Challenge(ctx context.Context, current *x509.Certificate) (Challenge, error) {
	cur, err := s.current(ctx, current)
	if err != nil {
		return Challenge{}, err
	}
	serial := cur.serial
	if cur.expired {
		// A challenge is the only way an expired certificate renews: hand
		// one out only when the renewal could go through.
		if _, _, err := s.renewable(ctx, cur, current); err != nil {
			return Challenge{}, err
		}
	}
	now := s.cfg.Now()
	nonce := secret.New(ChallengePrefix)
	got, err := s.cfg.Records.CreateRenewalChallenge(ctx, store.RenewalChallenge{Hash: secret.Hash(nonce), Nonce: nonce,
		Serial: serial, ExpiresAt: now.Add(s.cfg.ChallengeTTL), CreatedAt: now}, s.cfg.ChallengesPerCert,
		now.Add(s.cfg.ChallengeTTL/2))
	if err != nil {
		return Challenge{}, err
	}
	return Challenge{Nonce: got.Nonce, ExpiresAt: got.ExpiresAt}, nil
}

// checkChallenge finds the CSR's challenge and checks it before anything is
// signed; the renewal's transaction redeems it (store.Renewal.ChallengeHash),
// which is what makes it single use. Until then the renewal's claim on the
// certificate keeps a second renewal with it from signing.
func (s *Service) checkChallenge(ctx context.Context, csr *x509.CertificateRequest, serial string) (string, error) {
	nonce, ok, err := ChallengeOf(csr)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fault.New(fault.ChallengeRequired,
			"without mutual TLS the csr must carry a challenge from POST /api/v1/renew/challenge as its challengePassword")
	}
	hash := secret.Hash(nonce)
	c, err := s.cfg.Records.GetRenewalChallenge(ctx, hash)
	switch {
	case fault.Is(err, fault.NotFound):
		return "", fault.New(fault.ChallengeInvalid, "renewal challenge is unknown or was already used")
	case err != nil:
		return "", err
	case c.Serial != serial:
		return "", fault.New(fault.ChallengeInvalid, "renewal challenge was issued for another certificate")
	case !s.cfg.Now().Before(c.ExpiresAt):
		return "", fault.New(fault.ChallengeExpired, "renewal challenge has expired; ask for a new one")
	}
	return hash, nil
}

func certRecord(deviceID string, leaf *x509.Certificate) store.Certificate {
	return store.Certificate{
		Serial:      ca.SerialHex(leaf.SerialNumber),
		Fingerprint: ca.Fingerprint(leaf),
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
