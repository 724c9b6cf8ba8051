package idevid

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// maxLinkDepth bounds the signature walk from a leaf to an anchor (vendor
// PKIs are two or three levels deep), and maxLinkSignatures the signature
// checks it may spend: a client controls chain[1:] and could otherwise send
// hundreds of certificates sharing one name to make the walk quadratic.
const (
	maxLinkDepth      = 8
	maxLinkSignatures = 64
)

// link reports whether chain[0] leads to one of v's anchors by issuer name
// and signature alone, ignoring validity periods, and returns that path
// (leaf first, anchor last). It says which vendor a chain belongs to even
// when Verify refuses it, so an expired IDevID of a registered vendor is
// Invalid rather than UnknownVendor. It never grants trust: Verify does.
func (v Vendor) link(chain []*x509.Certificate) ([]*x509.Certificate, bool) {
	if len(chain) == 0 || chain[0] == nil || len(v.Anchors) == 0 {
		return nil, false
	}
	pool := make([]*x509.Certificate, 0, len(v.Intermediates)+len(chain))
	pool = append(pool, v.Intermediates...)
	pool = append(pool, chain[1:]...)
	seen := map[*x509.Certificate]bool{}
	budget := maxLinkSignatures
	// issued reports whether parent's name and key issued c.
	issued := func(parent, c *x509.Certificate) bool {
		if parent == nil || !bytes.Equal(parent.RawSubject, c.RawIssuer) || budget <= 0 {
			return false
		}
		budget--
		return c.CheckSignatureFrom(parent) == nil
	}
	var walk func(c *x509.Certificate, path []*x509.Certificate) ([]*x509.Certificate, bool)
	walk = func(c *x509.Certificate, path []*x509.Certificate) ([]*x509.Certificate, bool) {
		path = append(path, c)
		for _, a := range v.Anchors {
			if a != nil && bytes.Equal(a.Raw, c.Raw) {
				return path, true
			}
		}
		if len(path) > maxLinkDepth {
			return nil, false
		}
		for _, a := range v.Anchors {
			if issued(a, c) {
				return append(path, a), true
			}
		}
		for _, p := range pool {
			if p == nil || seen[p] || !issued(p, c) {
				continue
			}
			seen[p] = true
			if found, ok := walk(p, path); ok {
				return found, true
			}
		}
		return nil, false
	}
	return walk(chain[0], nil)
}

// verify runs crypto/x509 Verify for chain against v at now and classifies
// a refusal: UnknownVendor when the chain does not even link to v's anchors,
// else Invalid naming the certificate out of its validity period (or
// Verify's reason).
func (v Vendor) verify(chain []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	path, linked := v.link(chain)
	if !linked {
		return nil, unknown(chain[0])
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	}
	for _, a := range v.Anchors {
		if a != nil {
			opts.Roots.AddCert(a)
		}
	}
	for _, c := range v.Intermediates {
		if c != nil {
			opts.Intermediates.AddCert(c)
		}
	}
	for _, c := range chain[1:] {
		if c != nil {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := handledSAN(chain[0]).Verify(opts)
	if err == nil {
		return chains, nil
	}
	for i, c := range path {
		switch {
		case now.Before(c.NotBefore):
			return nil, fault.Wrap(err, Invalid, "%s is not yet valid: valid from %s", role(i, len(path), c), c.NotBefore.UTC().Format(time.RFC3339))
		case now.After(c.NotAfter):
			return nil, fault.Wrap(err, Invalid, "%s expired at %s", role(i, len(path), c), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil, fault.Wrap(err, Invalid, "the IDevID chain to vendor %q does not verify: %s", v.Name, verifyReason(err))
}

// handledSAN returns leaf, or a copy of it that no longer lists its
// subjectAltName as an unhandled critical extension when that SAN holds only
// names this package reads (a hardwareModuleName). crypto/x509 marks a
// critical SAN it found no DNS/email/IP/URI in as unhandled, and RFC 5280
// makes the SAN critical when the subject is empty: exactly an 802.1AR
// IDevID that names its device by hardwareModuleName alone.
func handledSAN(leaf *x509.Certificate) *x509.Certificate {
	if len(leaf.UnhandledCriticalExtensions) == 0 {
		return leaf
	}
	var rest []asn1.ObjectIdentifier
	for _, oid := range leaf.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			rest = append(rest, oid)
		}
	}
	if len(rest) == len(leaf.UnhandledCriticalExtensions) {
		return leaf
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			if serials, err := parseHardwareModuleNames(ext.Value); err != nil || len(serials) == 0 {
				return leaf
			}
		}
	}
	c := *leaf
	c.UnhandledCriticalExtensions = rest
	return &c
}

// verifyReason is a client-safe summary of a Verify error: x509's own
// messages name no secrets, only the reason.
func verifyReason(err error) string {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		return inv.Error()
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return "no valid path to a vendor anchor"
	}
	return "certificate not accepted"
}

// role names a certificate of a verified path in messages.
func role(i, n int, c *x509.Certificate) string {
	switch {
	case i == 0:
		return fmt.Sprintf("the IDevID (serial %s)", serialHex(c))
	case i == n-1:
		return fmt.Sprintf("the vendor anchor %q", clip(c.Subject.String()))
	default:
		return fmt.Sprintf("the vendor intermediate %q", clip(c.Subject.String()))
	}
}

func unknown(leaf *x509.Certificate) error {
	return fault.New(UnknownVendor, "the IDevID issued by %q chains to no registered vendor anchor", clip(leaf.Issuer.String()))
}

// checkRevocation checks every certificate of every verified chain except
// its anchor against v's CRLs. A certificate whose issuer has no CRL in v is
// not checked (the operator registered none for it); a certificate listed
// on any covering CRL is Revoked; a covering CRL set whose newest member is
// past NextUpdate is CRLStale, so an operator who once imported a CRL must
// keep it fresh. Every chain is checked, not just one that passes, so an
// alternative path never hides a revocation.
func (v Vendor) checkRevocation(chains [][]*x509.Certificate, now time.Time) error {
	if len(v.CRLs) == 0 {
		return nil
	}
	var stale error
	for _, ch := range chains {
		for i := 0; i+1 < len(ch); i++ {
			c, issuer := ch[i], ch[i+1]
			covered, fresh := false, false
			for _, crl := range v.CRLs {
				if crl == nil || !bytes.Equal(crl.RawIssuer, c.RawIssuer) || !v.signedByIssuer(crl, issuer) {
					continue
				}
				// Every CRL of the issuer revokes (a serial is one
				// certificate); freshness is asked only of the CRLs whose
				// scope covers c (a partition c is not in says nothing
				// about c).
				if covers(crl, c) {
					covered = true
					if !crl.NextUpdate.IsZero() && !now.After(crl.NextUpdate) {
						fresh = true
					}
				}
				for _, e := range crl.RevokedCertificateEntries {
					if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
						return fault.New(Revoked, "%s is revoked by the vendor CRL of %q (revoked at %s)", role(i, len(ch), c), issuer.Subject.String(), e.RevocationTime.UTC().Format(time.RFC3339))
					}
				}
			}
			if covered && !fresh && stale == nil {
				stale = fault.New(CRLStale, "the vendor CRL of %q covering %s is past its nextUpdate: import a fresh one", issuer.Subject.String(), role(i, len(ch), c))
			}
		}
	}
	return stale
}

// covers reports whether crl's scope (CRLScope) takes in c: a CRL without
// one covers all its issuer's certificates, a scoped one those whose CRL
// distribution points name one of its URIs. A scope that does not parse
// (ParseCRL refuses it at import) covers everything: it then asks
// freshness of c, failing closed.
func covers(crl *x509.RevocationList, c *x509.Certificate) bool {
	scope, err := CRLScope(crl)
	if err != nil || len(scope) == 0 {
		return true
	}
	for _, u := range scope {
		if slices.Contains(c.CRLDistributionPoints, u) {
			return true
		}
	}
	return false
}

// signedByIssuer reports whether crl is signed by issuer, the certificate
// that issued the one checked, or by a registered CA of the same name: a CA
// re-keyed under its name signs one CRL, with its new key, for everything
// issued under that name (RFC 5280 §5), old key included. Another key of
// the name can only add revocations, never remove one.
func (v Vendor) signedByIssuer(crl *x509.RevocationList, issuer *x509.Certificate) bool {
	if crl.CheckSignatureFrom(issuer) == nil {
		return true
	}
	for _, set := range [][]*x509.Certificate{v.Anchors, v.Intermediates} {
		for _, ca := range set {
			if ca != nil && ca != issuer && bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
				return true
			}
		}
	}
	return false
}

// serialHex is a certificate serial in the AllowEntry form: lower-case hex,
// no leading zeros.
func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// issuerOf is the certificate that signed the leaf in the verified chains
// (one key for all of them: Verify links by signature), or the leaf when an
// anchor is the leaf itself.
func issuerOf(chains [][]*x509.Certificate) *x509.Certificate {
	if len(chains[0]) > 1 {
		return chains[0][1]
	}
	return chains[0][0]
}

func identityKey(c, issuer *x509.Certificate) string {
	spki := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	h := sha256.New()
	h.Write(spki[:])
	h.Write(c.RawIssuer)
	if c.SerialNumber != nil {
		h.Write(c.SerialNumber.Bytes())
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
