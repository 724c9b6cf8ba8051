// Package idevid checks vendor device certificates (IEEE 802.1AR IDevIDs,
// or any vendor's device attestation certificate) against the trust
// anchors an operator registered for a fleet, and derives the Gatehouse
// device id from them. It is pure: no store, no HTTP; enroll and est use it.
//
// Trust is decided by crypto/x509 (Verify at the request's time, any EKU);
// this package adds what Verify cannot say: which registered vendor a chain
// belongs to even when it is expired (so an expired IDevID is "invalid",
// not "unknown"), vendor CRLs, and the device id.
package idevid

import (
	"crypto/x509"
	"io"
	"time"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Codes of an IDevID refusal; api/errors.go maps them to statuses.
const (
	// UnknownVendor: the certificate chains to no registered vendor
	// anchor (401: the client may fall back to a token).
	UnknownVendor fault.Code = "idevid_unknown_vendor"
	// Invalid: chains to a vendor, but is expired, not yet valid, has a
	// bad chain, or no device id can be derived from it (403).
	Invalid fault.Code = "idevid_invalid"
	// Revoked: the leaf or an intermediate is on a vendor CRL (403).
	Revoked fault.Code = "idevid_revoked"
	// CRLStale: a registered vendor CRL that covers this chain is past its
	// nextUpdate; fail closed until the operator imports a fresh one (403).
	CRLStale fault.Code = "idevid_crl_stale"
	// NotAllowed: the vendor requires its allow-list and the IDevID's
	// serial is not on it (403).
	NotAllowed fault.Code = "idevid_not_allowed"
	// Used: this IDevID enrolled already and its vendor does not allow
	// re-enrollment (403; raised by enroll, declared here with the rest).
	Used fault.Code = "idevid_used"
)

// IsCode reports whether c is one of an IDevID refusal's codes above (a
// metric may take them as labels, like fault's own).
func IsCode(c fault.Code) bool {
	switch c {
	case UnknownVendor, Invalid, Revoked, CRLStale, NotAllowed, Used:
		return true
	}
	return false
}

// IDFrom names where a device id is read from an IDevID.
type IDFrom string

const (
	// FromSerialNumber: the subject's serialNumber attribute (2.5.4.5),
	// where 802.1AR puts the device serial.
	FromSerialNumber IDFrom = "serial_number"
	// FromCN: the subject's common name.
	FromCN IDFrom = "cn"
	// FromSANDNS: the first DNS name SAN.
	FromSANDNS IDFrom = "san_dns"
	// FromSANURI: the first URI SAN's last segment after ':' or '/'
	// (urn:dev:ops:acme-1234 gives acme-1234).
	FromSANURI IDFrom = "san_uri"
	// FromHardwareModule: the hwSerialNum of the hardwareModuleName
	// otherName SAN (RFC 4108, 1.3.6.1.5.5.7.8.4), as text when it is
	// printable and valid, else lower-case hex.
	FromHardwareModule IDFrom = "san_hwmodule"
)

// Vendor is one vendor PKI registered for a fleet.
type Vendor struct {
	// Name is the vendor's registration name ([A-Za-z0-9._-]{1,64}).
	Name string
	// Fleet and Profile are what an IDevID of this vendor enrolls into.
	Fleet   string
	Profile string
	// Anchors are trusted as roots (a vendor root, or an intermediate the
	// operator chose to trust alone). Intermediates help build chains and
	// are trusted only through an anchor.
	Anchors       []*x509.Certificate
	Intermediates []*x509.Certificate
	// CRLs are vendor CRLs; each must be signed by an anchor or an
	// intermediate (ParseCRL checks). A chain certificate whose issuer has
	// a CRL here is checked against it; a covering CRL past NextUpdate is
	// CRLStale. A certificate whose issuer has no CRL here is not checked
	// (the operator imported none for it), and the anchor itself never is.
	CRLs []*x509.RevocationList
	// IDFrom and IDPrefix derive the device id: IDPrefix + the value, which
	// must then satisfy deviceid.Valid.
	IDFrom   IDFrom
	IDPrefix string
	// AllowReenroll lets one IDevID enroll again (a factory reset): the
	// device keeps its id and gets a new certificate. Off: once per IDevID.
	AllowReenroll bool
	// RequireAllowList: only IDevID serials on the vendor's imported
	// allow-list may enroll. The list lives in the store (it may hold
	// millions of serials); enroll looks the serial up, Check does not.
	RequireAllowList bool
}

// Identity is what a verified IDevID says.
type Identity struct {
	Vendor   string
	DeviceID string
	// Issuer is the IDevID's issuer DN (RFC 4514 string) and Serial its
	// serial in lower-case hex: both go into the audit record.
	Issuer string
	Serial string
	// Key identifies the IDevID across requests: hex SHA-256 over the
	// issuing CA's public key, the issuer's raw DER and the serial's bytes.
	// At most one enrollment per Key unless the vendor allows
	// re-enrollment.
	//
	// Precisely: sha256(sha256(issuer.RawSubjectPublicKeyInfo) ||
	// leaf.RawIssuer || leaf.SerialNumber.Bytes()), the serial as its
	// unsigned big-endian magnitude, issuer the certificate that signed the
	// leaf in the verified chain. RawIssuer is a DER SEQUENCE carrying its
	// own length, so the concatenation is unambiguous. The issuing key is in
	// it because names and serials are public and not unique across PKIs:
	// another registered vendor whose CA copies this one's name must not
	// reach an IDevID's record by issuing the same serial (it verifies only
	// with its own key, so its Key differs).
	Key string
	// Fingerprint is the hex SHA-256 of the leaf's DER.
	Fingerprint string
	NotAfter    time.Time
}

// Match finds among vendors the one whose anchors issued chain[0] (with
// chain[1:] as intermediates the client sent) and checks it there
// (Vendor.Check). No vendor: UnknownVendor.
//
// Exactly one vendor's anchors may link to the chain (by signature,
// ignoring time), and that one decides, whatever its verdict. A chain two
// registrations link to is Invalid: which fleet, allow-list and CRLs
// decide would otherwise be an accident of order, and an IDevID refused
// (expired, revoked) under one registration could slip in under another.
func Match(vendors []Vendor, chain []*x509.Certificate, now time.Time) (Identity, Vendor, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, Vendor{}, fault.New(UnknownVendor, "no IDevID certificate was presented")
	}
	var linked []Vendor
	for _, v := range vendors {
		if _, ok := v.link(chain); ok {
			linked = append(linked, v)
		}
	}
	switch len(linked) {
	case 0:
		return Identity{}, Vendor{}, unknown(chain[0])
	case 1:
		id, err := linked[0].Check(chain, now)
		return id, linked[0], err
	}
	// Two registrations trust this chain (the vendors service refuses
	// overlapping registrations, but a device may send an intermediate
	// that links them): which fleet, allow-list and CRLs decide would be
	// an accident of order, so neither does.
	return Identity{}, Vendor{}, fault.New(Invalid, "the IDevID chains to %d vendor registrations: an operator must remove all but one", len(linked))
}

// Check verifies chain against v at now: a chain to an anchor (any EKU:
// IDevIDs rarely carry clientAuth), every certificate valid at now, none
// revoked by a CRL of v, and a device id derivable per v.IDFrom. The
// allow-list is enroll's to check (RequireAllowList).
func (v Vendor) Check(chain []*x509.Certificate, now time.Time) (Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, fault.New(Invalid, "no IDevID certificate was presented")
	}
	chains, err := v.verify(chain, now)
	if err != nil {
		return Identity{}, err
	}
	if err := v.checkRevocation(chains, now); err != nil {
		return Identity{}, err
	}
	leaf := chain[0]
	devID, err := DeriveID(leaf, v.IDFrom, v.IDPrefix)
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		Vendor:      v.Name,
		DeviceID:    devID,
		Issuer:      leaf.Issuer.String(),
		Serial:      serialHex(leaf),
		Key:         identityKey(leaf, issuerOf(chains)),
		Fingerprint: fingerprint(leaf),
		NotAfter:    leaf.NotAfter,
	}, nil
}

// DeriveID returns prefix + the value of cert named by from, or Invalid.
func DeriveID(cert *x509.Certificate, from IDFrom, prefix string) (string, error) {
	if cert == nil {
		return "", fault.New(Invalid, "no IDevID certificate")
	}
	value, err := rawID(cert, from)
	if err != nil {
		return "", err
	}
	id := prefix + value
	if !deviceid.Valid(id) {
		return "", fault.New(Invalid, "the IDevID's %s gives device id %q, which is not valid: it must match %s", from, clip(id), deviceid.Grammar)
	}
	return id, nil
}

// ParseIDFrom validates an operator's id_from value.
func ParseIDFrom(s string) (IDFrom, error) {
	for _, f := range idFroms {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fault.New(fault.InvalidArgument, "id_from %q is not one of %s", clip(s), idFromList())
}

// ParseCertificates reads one or more PEM certificates (anchors or
// intermediates); anything else in the input is an InvalidArgument.
func ParseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	return parseCertificates(pemBytes)
}

// ParseCRL reads a vendor CRL (PEM or DER) and checks it is signed by one
// of cas; InvalidArgument otherwise.
func ParseCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	return parseCRL(data, cas)
}

// AllowEntry is one line of an allow-list CSV.
type AllowEntry struct {
	// Serial is normalised: lower-case hex, no colons, no leading zeros.
	Serial string
}

// ParseAllowList reads an allow-list CSV: one IDevID serial per line in
// the first column (hex, colons allowed, optional 0x), an optional header
// line "serial", at most max entries; other columns are ignored. A bad line
// is InvalidArgument naming its line number.
//
// Duplicates collapse to their first occurrence (the result keeps input
// order); max counts distinct serials, and max <= 0 means no limit (callers
// pass their configured one). Lines starting with '#' and empty lines are
// skipped; a UTF-8 byte order mark (spreadsheet exports) is ignored.
func ParseAllowList(r io.Reader, max int) ([]AllowEntry, error) {
	return parseAllowList(r, max)
}

// NormalizeSerial returns s (hex, optional colons, optional 0x) in the
// AllowList form, or InvalidArgument.
func NormalizeSerial(s string) (string, error) {
	return normalizeSerial(s)
}
