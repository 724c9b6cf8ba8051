// Package vendors manages the vendor PKIs an operator registers per fleet
// for IDevID enrollment (issue 15): trust anchors and intermediates, how a
// device id is derived, the vendor's CRLs and its allow-list of IDevID
// serials. It checks what is registered with package idevid's parsers, so
// enrollment later reads only what parsed, and gives every change an audit
// event that the store writes in the change's transaction.
package vendors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Registry stores vendors.
type Registry interface {
	CreateIDevIDVendor(ctx context.Context, v store.IDevIDVendor, audit *store.AuditEvent) (store.IDevIDVendor, error)
	GetIDevIDVendor(ctx context.Context, fleet, name string) (store.IDevIDVendor, error)
	ListIDevIDVendors(ctx context.Context, fleet string) ([]store.IDevIDVendor, error)
	UpdateIDevIDVendor(ctx context.Context, v store.IDevIDVendor, audit *store.AuditEvent) (store.IDevIDVendor, error)
	DeleteIDevIDVendor(ctx context.Context, fleet, name string, audit *store.AuditEvent) error
}

// Lists stores a vendor's CRLs and allow-list.
type Lists interface {
	PutIDevIDVendorCRL(ctx context.Context, fleet, name, issuerKey string, der []byte, number *big.Int,
		thisUpdate time.Time, audit *store.AuditEvent) error
	ReplaceIDevIDAllowList(ctx context.Context, fleet, name string, serials []string, audit *store.AuditEvent) (int, error)
}

var (
	_ Registry = (*store.Store)(nil)
	_ Lists    = (*store.Store)(nil)
)

// DefaultMaxAllowList is how many serials an allow-list may hold unless
// Config says otherwise: twice the million a factory lot is sized at.
const DefaultMaxAllowList = 2_000_000

// maxCerts bounds the anchors and the intermediates of one vendor.
const maxCerts = 100

// Config wires the service.
type Config struct {
	Registry Registry
	Lists    Lists
	// MaxAllowList caps an allow-list's serials; default DefaultMaxAllowList.
	MaxAllowList int
	// Now tells a stale CRL; default time.Now.
	Now func() time.Time
}

// Service is the vendor registry's domain.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Registry == nil || cfg.Lists == nil {
		return nil, errors.New("vendors: Registry and Lists are required")
	}
	if cfg.MaxAllowList <= 0 {
		cfg.MaxAllowList = DefaultMaxAllowList
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Vendor is a registered vendor with what its PEMs and CRLs say.
type Vendor struct {
	store.IDevIDVendor
	Anchors, Intermediates []Cert
	CRLList                []CRL
}

// Cert describes one anchor or intermediate.
type Cert struct {
	Subject     string
	Fingerprint string // hex SHA-256 of the DER
	NotAfter    time.Time
}

// CRL describes one stored vendor CRL. Number is decimal, "" when the list
// has none; Stale is true past NextUpdate (enrollments it covers then fail
// with idevid_crl_stale until a fresh one is imported).
type CRL struct {
	Issuer                 string
	Number                 string
	ThisUpdate, NextUpdate time.Time
	Entries                int
	Stale                  bool
}

// Patch is a change to a vendor: nil fields stay as they are.
type Patch struct {
	Profile, IDFrom, IDPrefix       *string
	AnchorsPEM, IntermediatesPEM    *string
	AllowReenroll, RequireAllowList *bool
}

func objID(fleet, name string) string { return fleet + "/" + name }

// check validates v and returns it with its PEMs re-encoded from what
// parsed (nothing but certificates is stored) and IDFrom defaulted.
func check(v store.IDevIDVendor) (store.IDevIDVendor, error) {
	for _, n := range []struct{ kind, name string }{{"fleet", v.Fleet}, {"vendor", v.Name}, {"profile", v.Profile}} {
		if !ca.ValidName(n.name) {
			return v, fault.New(fault.InvalidArgument, "%s name %q must match [A-Za-z0-9._-]{1,64}", n.kind, n.name)
		}
	}
	if v.IDFrom == "" {
		v.IDFrom = string(idevid.FromSerialNumber)
	}
	from, err := idevid.ParseIDFrom(v.IDFrom)
	if err != nil {
		return v, err
	}
	v.IDFrom = string(from)
	if v.IDPrefix != "" && (len(v.IDPrefix) >= deviceid.MaxLen || !deviceid.Valid(v.IDPrefix+"0")) {
		return v, fault.New(fault.InvalidArgument, "id_prefix %q: a device id made with it would not be valid (%s)", v.IDPrefix, deviceid.Grammar)
	}
	anchors, err := parseCerts("anchors_pem", v.AnchorsPEM)
	if err != nil {
		return v, err
	}
	if len(anchors) == 0 {
		return v, fault.New(fault.InvalidArgument, "anchors_pem: at least one trust anchor certificate is required")
	}
	ints, err := parseCerts("intermediates_pem", v.IntermediatesPEM)
	if err != nil {
		return v, err
	}
	v.AnchorsPEM, v.IntermediatesPEM = encode(anchors), encode(ints)
	return v, nil
}

// parseCerts reads a PEM field of certificates: idevid.ParseCertificates
// decides what is acceptable; a walk of its own first names the line of a
// fault, which an operator pasting a bundle needs. Every certificate must be
// a CA: anything else can issue no IDevID.
func parseCerts(field, text string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	if err := pemLines(field, []byte(text)); err != nil {
		return nil, err
	}
	certs, err := idevid.ParseCertificates([]byte(text))
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "%s: %s", field, fault.MessageOf(err))
	}
	if len(certs) > maxCerts {
		return nil, fault.New(fault.InvalidArgument, "%s holds %d certificates; at most %d", field, len(certs), maxCerts)
	}
	for i, c := range certs {
		if !c.IsCA {
			return nil, fault.New(fault.InvalidArgument, "%s: certificate %d (%s) is not a CA certificate", field, i+1, c.Subject)
		}
	}
	return certs, nil
}

// pemLines walks PEM text block by block and names the line where it goes
// wrong: text outside blocks that is not blank, a block that is not a
// CERTIFICATE, a certificate that does not parse, or a block that does not
// decode (from its BEGIN line on).
func pemLines(field string, data []byte) error {
	begin, nl := []byte("-----BEGIN "), []byte("\n")
	line := 1
	for rest := data; len(rest) > 0; {
		at := bytes.Index(rest, begin)
		if at < 0 {
			at = len(rest)
		}
		if len(bytes.TrimSpace(rest[:at])) > 0 {
			lead := at - len(bytes.TrimLeft(rest[:at], " \t\r\n"))
			return fault.New(fault.InvalidArgument, "%s: line %d: text outside a PEM block", field, line+bytes.Count(rest[:lead], nl))
		}
		line += bytes.Count(rest[:at], nl)
		if rest = rest[at:]; len(rest) == 0 {
			return nil
		}
		block, after := pem.Decode(rest)
		used := rest[:len(rest)-len(after)]
		// pem.Decode skips a malformed block and returns the next good
		// one: a block is good only if it is the first thing decoded.
		if block == nil || bytes.Count(used, begin) > 1 {
			return fault.New(fault.InvalidArgument, "%s: line %d: a PEM block that does not decode (bad base64 or no END line)", field, line)
		}
		if block.Type != "CERTIFICATE" {
			return fault.New(fault.InvalidArgument, "%s: line %d: a %s block, want CERTIFICATE", field, line, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fault.New(fault.InvalidArgument, "%s: line %d: the certificate does not parse: %v", field, line, err)
		}
		line += bytes.Count(used, nl)
		rest = after
	}
	return nil
}

func encode(certs []*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

func detail(v store.IDevIDVendor) string {
	return fmt.Sprintf("profile=%s id_from=%s id_prefix=%q allow_reenroll=%t require_allowlist=%t anchors=%d intermediates=%d",
		v.Profile, v.IDFrom, v.IDPrefix, v.AllowReenroll, v.RequireAllowList,
		strings.Count(v.AnchorsPEM, "-----BEGIN"), strings.Count(v.IntermediatesPEM, "-----BEGIN"))
}

// Create validates and registers a vendor.
func (s *Service) Create(ctx context.Context, actor string, v store.IDevIDVendor) (Vendor, error) {
	v, err := check(v)
	if err != nil {
		return Vendor{}, err
	}
	if err := s.unshared(ctx, v); err != nil {
		return Vendor{}, err
	}
	out, err := s.cfg.Registry.CreateIDevIDVendor(ctx, v,
		audit.Event(actor, "idevid_vendor.create", "idevid_vendor", objID(v.Fleet, v.Name), detail(v)))
	if err != nil {
		return Vendor{}, err
	}
	return s.describe(out), nil
}

// Get returns one vendor.
func (s *Service) Get(ctx context.Context, fleet, name string) (Vendor, error) {
	v, err := s.cfg.Registry.GetIDevIDVendor(ctx, fleet, name)
	if err != nil {
		return Vendor{}, err
	}
	return s.describe(v), nil
}

// List returns the vendors of a fleet, which must exist.
func (s *Service) List(ctx context.Context, fleet string) ([]Vendor, error) {
	if !ca.ValidName(fleet) {
		return nil, fault.New(fault.NotFound, "fleet %q not found", fleet)
	}
	vs, err := s.cfg.Registry.ListIDevIDVendors(ctx, fleet)
	if err != nil {
		return nil, err
	}
	out := make([]Vendor, len(vs))
	for i, v := range vs {
		out[i] = s.describe(v)
	}
	return out, nil
}

// Update applies p to a vendor and validates the result.
func (s *Service) Update(ctx context.Context, actor, fleet, name string, p Patch) (Vendor, error) {
	v, err := s.cfg.Registry.GetIDevIDVendor(ctx, fleet, name)
	if err != nil {
		return Vendor{}, err
	}
	for _, f := range []struct {
		dst *string
		src *string
	}{{&v.Profile, p.Profile}, {&v.IDFrom, p.IDFrom}, {&v.IDPrefix, p.IDPrefix},
		{&v.AnchorsPEM, p.AnchorsPEM}, {&v.IntermediatesPEM, p.IntermediatesPEM}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if p.AllowReenroll != nil {
		v.AllowReenroll = *p.AllowReenroll
	}
	if p.RequireAllowList != nil {
		v.RequireAllowList = *p.RequireAllowList
	}
	if v, err = check(v); err != nil {
		return Vendor{}, err
	}
	if err := s.unshared(ctx, v); err != nil {
		return Vendor{}, err
	}
	out, err := s.cfg.Registry.UpdateIDevIDVendor(ctx, v,
		audit.Event(actor, "idevid_vendor.update", "idevid_vendor", objID(fleet, name), detail(v)))
	if err != nil {
		return Vendor{}, err
	}
	return s.describe(out), nil
}

// unshared refuses v when one of its CAs (anchor or intermediate) is
// another registration's, by key, or signed one of them, or was signed by
// one: an IDevID goes to a registration that trusts its chain, so two that
// trust one PKI (say, its root in one and its intermediate in another)
// would share its devices, and the allow-list and CRLs of either could be
// avoided through the other. One vendor PKI, one registration: steer its
// devices to profiles with EST labels. (idevid.Match also refuses a chain
// two registrations trust, for chains through intermediates a device
// sends.)
func (s *Service) unshared(ctx context.Context, v store.IDevIDVendor) error {
	mine := caCerts(v)
	all, err := s.cfg.Registry.ListIDevIDVendors(ctx, "")
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Fleet == v.Fleet && o.Name == v.Name {
			continue
		}
		for _, theirs := range caCerts(o) {
			for _, c := range mine {
				if bytes.Equal(c.RawSubjectPublicKeyInfo, theirs.RawSubjectPublicKeyInfo) ||
					linked(c, theirs) || linked(theirs, c) {
					return fault.New(fault.Conflict, "%q belongs to the vendor PKI registered already as vendor %s of fleet %s: one vendor PKI has one registration",
						c.Subject.String(), o.Name, o.Fleet)
				}
			}
		}
	}
	return nil
}

// linked reports whether parent signed child.
func linked(child, parent *x509.Certificate) bool {
	return bytes.Equal(child.RawIssuer, parent.RawSubject) && child.CheckSignatureFrom(parent) == nil
}

// caCerts are v's anchors and intermediates; a stored PEM that no longer
// parses has none (check refuses it on the way in).
func caCerts(v store.IDevIDVendor) []*x509.Certificate {
	var out []*x509.Certificate
	for _, text := range []string{v.AnchorsPEM, v.IntermediatesPEM} {
		if certs, err := idevid.ParseCertificates([]byte(text)); err == nil {
			out = append(out, certs...)
		}
	}
	return out
}

// Delete removes a vendor with its CRLs and allow-list.
func (s *Service) Delete(ctx context.Context, actor, fleet, name string) error {
	return s.cfg.Registry.DeleteIDevIDVendor(ctx, fleet, name,
		audit.Event(actor, "idevid_vendor.delete", "idevid_vendor", objID(fleet, name), ""))
}

// ImportCRL stores a vendor CRL (PEM or DER) signed by one of the vendor's
// anchors or intermediates, unless the stored list of its issuer is as new
// or newer (fault.Conflict: no rollback un-revokes a certificate).
func (s *Service) ImportCRL(ctx context.Context, actor, fleet, name string, data []byte) (CRL, error) {
	v, err := s.cfg.Registry.GetIDevIDVendor(ctx, fleet, name)
	if err != nil {
		return CRL{}, err
	}
	cas, err := idevid.ParseCertificates([]byte(v.AnchorsPEM + v.IntermediatesPEM))
	if err != nil {
		return CRL{}, fmt.Errorf("stored certificates of vendor %s: %w", objID(fleet, name), err)
	}
	crl, err := idevid.ParseCRL(data, cas)
	if err != nil {
		return CRL{}, fault.Wrap(err, fault.InvalidArgument, "CRL: %s", fault.MessageOf(err))
	}
	key, err := issuerKey(crl, cas)
	if err != nil {
		return CRL{}, err
	}
	info := s.describeCRL(crl)
	err = s.cfg.Lists.PutIDevIDVendorCRL(ctx, fleet, name, key, crl.Raw, crl.Number, crl.ThisUpdate,
		audit.Event(actor, "idevid_vendor.crl_import", "idevid_vendor", objID(fleet, name),
			fmt.Sprintf("issuer=%q number=%s this_update=%s next_update=%s entries=%d", info.Issuer, info.Number,
				info.ThisUpdate.Format(time.RFC3339), info.NextUpdate.Format(time.RFC3339), info.Entries)))
	if err != nil {
		return CRL{}, err
	}
	return info, nil
}

// issuerKey names the CA that signed crl: its subject and its key, so a
// re-keyed CA of the same name, whose numbers start again, is another
// issuer rather than a rollback of the old one.
func issuerKey(crl *x509.RevocationList, cas []*x509.Certificate) (string, error) {
	for _, c := range cas {
		if string(c.RawSubject) == string(crl.RawIssuer) && crl.CheckSignatureFrom(c) == nil {
			h := sha256.New()
			h.Write(c.RawSubject)
			h.Write([]byte{0})
			h.Write(c.RawSubjectPublicKeyInfo)
			// One CRL per scope too: a partition never replaces another
			// (and an unscoped CRL keeps the key it always had).
			scope, err := idevid.CRLScope(crl)
			if err != nil {
				return "", err
			}
			for _, u := range scope {
				h.Write([]byte{0})
				h.Write([]byte(u))
			}
			return hex.EncodeToString(h.Sum(nil)), nil
		}
	}
	return "", fault.New(fault.InvalidArgument, "CRL: signed by none of the vendor's anchors and intermediates")
}

// ReplaceAllowList replaces a vendor's allow-list with the serials of an
// allow-list CSV (idevid.ParseAllowList: a bad line is InvalidArgument
// naming it) and returns how many the list holds. Nothing changes unless
// the whole file parsed and the whole list was stored.
func (s *Service) ReplaceAllowList(ctx context.Context, actor, fleet, name string, csv io.Reader) (int, error) {
	entries, err := idevid.ParseAllowList(csv, s.cfg.MaxAllowList)
	if err != nil {
		return 0, err
	}
	serials := make([]string, len(entries))
	for i, e := range entries {
		serials[i] = e.Serial
	}
	entries = nil
	// Sorted, the inserts walk the primary key in order; compacted, the
	// count in the audit event is what the list holds.
	slices.Sort(serials)
	serials = slices.Compact(serials)
	return s.cfg.Lists.ReplaceIDevIDAllowList(ctx, fleet, name, serials,
		audit.Event(actor, "idevid_vendor.allowlist_replace", "idevid_vendor", objID(fleet, name),
			fmt.Sprintf("serials=%d", len(serials))))
}

// describe adds what v's PEMs and CRLs say. Stored data was checked when
// it was written; a part that does not parse now is left out of the
// description rather than failing the read.
func (s *Service) describe(v store.IDevIDVendor) Vendor {
	out := Vendor{IDevIDVendor: v, Anchors: describeCerts(v.AnchorsPEM), Intermediates: describeCerts(v.IntermediatesPEM)}
	for _, der := range v.CRLs {
		if crl, err := x509.ParseRevocationList(der); err == nil {
			out.CRLList = append(out.CRLList, s.describeCRL(crl))
		}
	}
	return out
}

func describeCerts(text string) []Cert {
	var out []Cert
	for rest := []byte(text); ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		out = append(out, Cert{Subject: c.Subject.String(), Fingerprint: ca.Fingerprint(c), NotAfter: c.NotAfter.UTC()})
	}
}

func (s *Service) describeCRL(crl *x509.RevocationList) CRL {
	c := CRL{Issuer: crl.Issuer.String(), ThisUpdate: crl.ThisUpdate.UTC(), NextUpdate: crl.NextUpdate.UTC(),
		Entries: len(crl.RevokedCertificateEntries)}
	if crl.Number != nil {
		c.Number = crl.Number.String()
	}
	c.Stale = !crl.NextUpdate.IsZero() && s.cfg.Now().After(crl.NextUpdate)
	return c
}
