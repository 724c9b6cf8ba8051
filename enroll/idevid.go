package enroll

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/store"
)

// IDevID enrollment (issue 15): a device presenting a vendor certificate
// (an IEEE 802.1AR IDevID) from a vendor PKI an operator registered for a
// fleet enrolls without a token, into the vendor's fleet and profile, under
// the id derived from the IDevID. The TLS handshake proved possession of
// the IDevID's key; package idevid checks the chain, enrollment everything
// else: the allow-list, once per IDevID, the claim before signing.

// Vendors lists the registered vendor PKIs and looks serials up on their
// allow-lists (store.Store).
type Vendors interface {
	// ListIDevIDVendors returns the vendors of fleet ("" for all), with
	// their CRLs.
	ListIDevIDVendors(ctx context.Context, fleet string) ([]store.IDevIDVendor, error)
	IDevIDAllowed(ctx context.Context, fleet, name, serial string) (bool, error)
}

// IDevIDs records IDevID enrollments, claimed before signing like tokens.
type IDevIDs interface {
	GetIDevIDEnrollment(ctx context.Context, key string) (store.IDevIDRecord, error)
	// ClaimIDevID is conflict when another live claim holds the IDevID or
	// its record is not as the claim expects (GetIDevIDEnrollment tells).
	ClaimIDevID(ctx context.Context, c store.IDevIDClaim, at time.Time) error
	ReleaseIDevIDClaim(ctx context.Context, key, claimID string) error
	CompleteIDevIDEnrollment(ctx context.Context, e store.IDevIDEnrollment) (store.IDevIDEnrolled, error)
}

var (
	_ Vendors = (*store.Store)(nil)
	_ IDevIDs = (*store.Store)(nil)
)

// IDevIDRequest is an enrollment by vendor certificate. Chain is the TLS
// client certificate chain, leaf first: the handshake proved possession of
// Chain[0]'s key, which is why nothing else authenticates the request.
// Label, when set (an EST label), must be the vendor's profile.
type IDevIDRequest struct {
	Chain []*x509.Certificate
	CSR   []byte
	Label string
}

// Audit actions of IDevID enrollments.
const (
	ActionEnrollIDevID   = "device.enroll_idevid"
	ActionReenrollIDevID = "device.reenroll_idevid"
)

// EnrollIDevID enrolls the device whose IDevID is req.Chain[0]. The first
// enrollment of an IDevID creates the device under the derived id; a
// second is idevid_used unless the vendor allows re-enrollment (the device
// then gets a new certificate, and its active one is superseded as by a
// renewal) — except a retry after a lost reply (the same IDevID and key,
// its certificate still active), which gets that certificate again.
func (s *Service) EnrollIDevID(ctx context.Context, req IDevIDRequest) (Result, error) {
	res, err := s.enrollIDevID(ctx, req)
	s.observe(KindIDevID, res, err)
	return res, err
}

func (s *Service) enrollIDevID(ctx context.Context, req IDevIDRequest) (Result, error) {
	if len(req.Chain) == 0 || req.Chain[0] == nil {
		return Result{}, fault.New(fault.Unauthenticated, "an IDevID enrollment needs the vendor certificate as TLS client certificate")
	}
	// The signature is verified by the CA, just before signing (or by
	// repeat, which signs nothing).
	csr, err := parseCSR(req.CSR, false)
	if err != nil {
		return Result{}, err
	}
	id, v, err := s.matchIDevID(ctx, req.Chain, req.Label)
	if err != nil {
		return Result{}, err
	}
	if v.RequireAllowList {
		ok, err := s.cfg.Vendors.IDevIDAllowed(ctx, v.Fleet, v.Name, id.Serial)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, fault.New(idevid.NotAllowed, "IDevID serial %s is not on vendor %s's allow-list", id.Serial, v.Name)
		}
	}
	profile, err := s.cfg.Catalog.GetProfile(ctx, v.Profile)
	if err != nil {
		return Result{}, err
	}
	// As claimToken: an IDevID another request holds is waited for, up
	// to ClaimWait; that request is most often this device retrying after
	// a lost reply, and once it commits this one gets its certificate.
	deadline := time.Now().Add(s.cfg.ClaimWait)
	pause := claimPollMin
	for first := true; ; first = false {
		rec, err := s.cfg.IDevIDs.GetIDevIDEnrollment(ctx, id.Key)
		if err != nil && !fault.Is(err, fault.NotFound) {
			return Result{}, err
		}
		reenroll := false
		if rec.Enrolled() && (rec.Fleet != v.Fleet || rec.Vendor != v.Name) {
			// The record is another registration's: neither a repeat nor a
			// re-enrollment may reach a device of another fleet or vendor.
			// Which registration is not the device's to learn.
			s.cfg.Log.Warn("IDevID refused: enrolled through another vendor registration", "vendor", v.Name, "fleet", v.Fleet,
				"enrolled_vendor", rec.Vendor, "enrolled_fleet", rec.Fleet, "idevid_serial", id.Serial)
			return Result{}, fault.New(idevid.Used, "this IDevID enrolled through another vendor registration")
		}
		if rec.Enrolled() {
			res, ok, err := s.idevidRepeat(ctx, rec, id, v, csr)
			if err != nil || ok {
				return res, err
			}
			// Only an IDevID that had enrolled when the request came
			// re-enrolls: one that lost a race to a first enrollment
			// while waiting is a replay of it.
			if !v.AllowReenroll || !first {
				return Result{}, fault.New(idevid.Used, "this IDevID enrolled device %s already; vendor %s does not allow re-enrollment",
					rec.DeviceID, v.Name)
			}
			reenroll = true
		}
		res, held, err := s.issueIDevID(ctx, id, v, profile, rec, reenroll, csr)
		if !held {
			return res, err
		}
		if time.Now().Add(pause).After(deadline) {
			return Result{}, fault.New(fault.Unavailable, "this IDevID is being enrolled by another request; retry")
		}
		select {
		case <-ctx.Done():
			return Result{}, fault.Wrap(ctx.Err(), fault.Unavailable, "gave up waiting for the IDevID")
		case <-time.After(pause):
		}
		pause = min(2*pause, claimPollMax)
	}
}

// matchIDevID verifies chain against the registered vendors. Under a
// label only vendors of that profile are candidates; an IDevID of another
// profile's vendor is told so (permission_denied), not unknown.
func (s *Service) matchIDevID(ctx context.Context, chain []*x509.Certificate, label string) (idevid.Identity, idevid.Vendor, error) {
	if s.cfg.Vendors == nil {
		return idevid.Identity{}, idevid.Vendor{}, fault.New(idevid.UnknownVendor, "no IDevID vendor is registered")
	}
	vendors, err := s.idevidVendors(ctx)
	if err != nil {
		return idevid.Identity{}, idevid.Vendor{}, err
	}
	now := s.cfg.Now()
	if label == "" {
		return idevid.Match(vendors, chain, now)
	}
	var of []idevid.Vendor
	for _, v := range vendors {
		if v.Profile == label {
			of = append(of, v)
		}
	}
	id, v, err := idevid.Match(of, chain, now)
	if fault.Is(err, idevid.UnknownVendor) {
		if _, other, oerr := idevid.Match(vendors, chain, now); oerr == nil {
			return idevid.Identity{}, idevid.Vendor{}, fault.New(fault.PermissionDenied,
				"this IDevID's vendor %s enrolls into profile %s, not EST label %q", other.Name, other.Profile, label)
		}
	}
	return id, v, err
}

// idevidRepeat answers an enrolled IDevID's request that is a retry after
// a lost reply: the same key, the certificate its last enrollment issued
// still the active certificate of the active device, and not expired. It
// reports false, nothing signed, when it is not.
func (s *Service) idevidRepeat(ctx context.Context, rec store.IDevIDRecord, id idevid.Identity, v idevid.Vendor,
	csr *x509.CertificateRequest) (Result, bool, error) {
	if rec.CertSerial == "" {
		return Result{}, false, nil
	}
	c, err := s.cfg.Records.GetCertificate(ctx, rec.CertSerial)
	if fault.Is(err, fault.NotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if c.Status != store.CertActive || c.DeviceID != rec.DeviceID {
		return Result{}, false, nil
	}
	leaf, err := ParseCertificatePEM([]byte(c.PEM))
	if err != nil {
		return Result{}, false, err
	}
	if !samePublicKey(csr.PublicKey, leaf.PublicKey) || !s.cfg.Now().Before(leaf.NotAfter) {
		return Result{}, false, nil
	}
	if err := csr.CheckSignature(); err != nil {
		return Result{}, false, fault.Wrap(err, fault.CSRInvalid, "csr signature does not verify")
	}
	dev, err := s.cfg.Records.GetDevice(ctx, rec.DeviceID)
	if err != nil {
		return Result{}, false, err
	}
	if dev.Status != store.DeviceActive {
		return Result{}, false, nil
	}
	s.cfg.Audit.Record(ctx, "device:"+dev.ID, "device.enroll_idevid_repeat", "device", dev.ID,
		idevidDetail(v, id, rec.CertSerial))
	return Result{Device: dev, Serial: rec.CertSerial, Certificate: leaf, Chain: s.cfg.Issuer.Chain(), Repeated: true}, true, nil
}

// issueIDevID claims the IDevID (and, re-enrolling, the device's active
// certificate), signs, and records the enrollment. held reports that
// another request holds the IDevID: nothing was done, the caller waits.
// What was signed and could not be recorded is discarded (revoked), and
// the claims let go.
func (s *Service) issueIDevID(ctx context.Context, id idevid.Identity, v idevid.Vendor, profile store.Profile,
	rec store.IDevIDRecord, reenroll bool, csr *x509.CertificateRequest) (_ Result, held bool, _ error) {
	dev := store.Device{ID: id.DeviceID, Fleet: v.Fleet, Profile: v.Profile}
	var oldSerial string
	if reenroll {
		// The device keeps its id and profile, as a renewal does.
		d, p, err := s.deviceProfile(ctx, rec.DeviceID)
		if err != nil {
			return Result{}, false, err
		}
		if err := keyAllowed(p.KeyTypes, csr.PublicKey); err != nil {
			return Result{}, false, err
		}
		dev, profile, oldSerial = d, p, rec.ActiveSerial
	} else if err := keyAllowed(profile.KeyTypes, csr.PublicKey); err != nil {
		// A first enrollment takes the vendor's profile (a re-enrollment
		// keeps the device's, checked above).
		return Result{}, false, err
	}
	now := s.cfg.Now()
	claim := s.newClaim(now)
	err := s.cfg.IDevIDs.ClaimIDevID(ctx, store.IDevIDClaim{Claim: claim, Key: id.Key, Fleet: v.Fleet, Vendor: v.Name,
		Issuer: id.Issuer, IDevIDSerial: id.Serial, DeviceID: dev.ID, Reenroll: reenroll}, now)
	if fault.Is(err, fault.Conflict) {
		return Result{}, true, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	ref := store.ClaimRef{IDevIDKey: id.Key, ID: claim.ID}
	if oldSerial != "" {
		// The renewal's claim: a renewal of the same certificate in flight
		// and this re-enrollment do not both replace it.
		if err := s.cfg.Claims.ClaimRenewal(ctx, dev.ID, oldSerial, claim, now); err != nil {
			s.releaseIDevID(ctx, ref)
			if fault.Is(err, fault.CertInvalid) {
				return Result{}, false, fault.Wrap(err, fault.Unavailable, "device %s's certificate is being renewed; retry", dev.ID)
			}
			return Result{}, false, err
		}
		ref.OldSerial = oldSerial
	}
	iss, err := s.cfg.Issuer.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: dev.Fleet, DeviceID: dev.ID,
		Validity: profile.Validity, Roles: profile.Roles})
	if err != nil {
		s.releaseIDevID(ctx, ref)
		return Result{}, false, err
	}
	serial := ca.SerialHex(iss.Leaf.SerialNumber)
	action := ActionEnrollIDevID
	if reenroll {
		action = ActionReenrollIDevID
	}
	out, err := s.cfg.IDevIDs.CompleteIDevIDEnrollment(ctx, store.IDevIDEnrollment{Key: id.Key, Device: dev,
		Cert: certRecord(dev.ID, iss.Leaf), At: s.cfg.Now(), Reenroll: reenroll, OldSerial: oldSerial, Claim: claim.ID,
		Audit: &store.AuditEvent{Actor: "device:" + dev.ID, Action: action, ObjectType: "device", ObjectID: dev.ID,
			Detail: idevidDetail(v, id, serial)}})
	if err != nil {
		if !s.discard(ctx, "IDevID enrollment", dev.ID, iss.Leaf, ref, err) {
			s.releaseIDevID(ctx, ref)
		}
		return Result{}, false, err
	}
	s.refresh(ctx, "IDevID enrollment", dev.ID)
	if out.Old.Status == store.CertRevoked {
		s.publishCRL(ctx)
	}
	return Result{Device: out.Device, Serial: serial, Certificate: iss.Leaf, Chain: iss.Chain}, false, nil
}

// idevidDetail is an IDevID enrollment's audit detail: which vendor
// certificate it was, and what Gatehouse issued for it.
func idevidDetail(v idevid.Vendor, id idevid.Identity, serial string) string {
	return fmt.Sprintf("vendor=%s idevid_issuer=%s idevid_serial=%s serial=%s", v.Name, id.Issuer, id.Serial, serial)
}

// releaseIDevID lets go of ref's claims (the IDevID's, and a
// re-enrollment's on the old certificate); a release that fails leaves
// them to expire.
func (s *Service) releaseIDevID(ctx context.Context, ref store.ClaimRef) {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := s.cfg.IDevIDs.ReleaseIDevIDClaim(ctx, ref.IDevIDKey, ref.ID); err != nil {
		s.cfg.Log.Warn("IDevID claim not released; it expires by itself", "ttl", s.cfg.ClaimTTL, "err", err)
	}
	if ref.OldSerial != "" {
		s.releaseRenewal(ctx, ref.OldSerial, ref.ID)
	}
}

// vendorCache keeps the parsed PKI (anchors, intermediates, CRLs) of each
// vendor row, so that a storm of enrollments does not parse PEMs and check
// CRL signatures for every request. An entry is keyed by everything it is
// parsed from (a digest of the row's identity, UpdatedAt and PKI bytes), so
// a changed row or a new CRL is parsed afresh even if UpdatedAt did not
// move; entries of rows no longer listed are dropped.
type vendorCache struct {
	mu     sync.Mutex
	parsed map[[sha256.Size]byte]parsedPKI
}

type parsedPKI struct {
	anchors, intermediates []*x509.Certificate
	crls                   []*x509.RevocationList
	from                   idevid.IDFrom
	err                    error
}

// idevidVendors returns every registered vendor that parses. A vendor row
// that does not (a PEM or CRL that no longer reads, an unknown id_from) is
// skipped, logged once: its devices are then unknown_vendor, never
// enrolled against a partial PKI.
func (s *Service) idevidVendors(ctx context.Context) ([]idevid.Vendor, error) {
	rows, err := s.cfg.Vendors.ListIDevIDVendors(ctx, "")
	if err != nil {
		return nil, err
	}
	c := &s.vendors
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[[sha256.Size]byte]parsedPKI, len(rows))
	out := make([]idevid.Vendor, 0, len(rows))
	for _, r := range rows {
		key := vendorKey(r)
		p, ok := c.parsed[key]
		if !ok {
			p = parseVendor(r)
			if p.err != nil {
				s.cfg.Log.Error("IDevID vendor skipped: its registration does not parse; its devices cannot enroll until it is fixed",
					"fleet", r.Fleet, "vendor", r.Name, "err", p.err)
			}
		}
		next[key] = p
		if p.err != nil {
			continue
		}
		out = append(out, idevid.Vendor{Name: r.Name, Fleet: r.Fleet, Profile: r.Profile, Anchors: p.anchors,
			Intermediates: p.intermediates, CRLs: p.crls, IDFrom: p.from, IDPrefix: r.IDPrefix,
			AllowReenroll: r.AllowReenroll, RequireAllowList: r.RequireAllowList})
	}
	c.parsed = next
	return out, nil
}

func parseVendor(r store.IDevIDVendor) parsedPKI {
	var p parsedPKI
	fail := func(what string, err error) parsedPKI { return parsedPKI{err: fmt.Errorf("%s: %w", what, err)} }
	var err error
	if p.from, err = idevid.ParseIDFrom(r.IDFrom); err != nil {
		return fail("id_from", err)
	}
	if p.anchors, err = idevid.ParseCertificates([]byte(r.AnchorsPEM)); err != nil {
		return fail("anchors", err)
	}
	if len(p.anchors) == 0 {
		return fail("anchors", errors.New("none"))
	}
	if r.IntermediatesPEM != "" {
		if p.intermediates, err = idevid.ParseCertificates([]byte(r.IntermediatesPEM)); err != nil {
			return fail("intermediates", err)
		}
	}
	// A stored CRL is not checked against the registered CAs here: one
	// whose CA was removed from the registration still checks the
	// certificates that CA issued (a device may send that CA in its own
	// chain), and Check verifies each CRL's signature against the issuer
	// in the chain it checks. Only a CRL that no longer parses fails the
	// vendor (closed: its devices are refused).
	for i, der := range r.CRLs {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return fail(fmt.Sprintf("CRL %d", i+1), err)
		}
		p.crls = append(p.crls, l)
	}
	return p
}

// vendorKey digests what parseVendor reads, length-prefixed.
func vendorKey(r store.IDevIDVendor) [sha256.Size]byte {
	h := sha256.New()
	put := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put([]byte(r.Fleet))
	put([]byte(r.Name))
	put([]byte(r.UpdatedAt.UTC().Format(time.RFC3339Nano)))
	put([]byte(r.IDFrom))
	put([]byte(r.AnchorsPEM))
	put([]byte(r.IntermediatesPEM))
	for _, c := range r.CRLs {
		put(c)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
