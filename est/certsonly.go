package est

import (
	"crypto/x509"
	"encoding/asn1"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Bounds of a certs-only message ParseCertsOnly reads. An EST answer holds
// one certificate (simpleenroll) or a CA chain (cacerts): these are far
// above either and keep a hostile server from making the device parse
// without end.
const (
	MaxCertsOnlyBytes = 1 << 20
	MaxCertsOnlyCerts = 32
)

// ParseCertsOnly reads a PKCS#7 certs-only message (RFC 7030 §4.1.3, RFC
// 5652 §5), DER, as CertsOnly writes it and as `openssl crl2pkcs7 -nocrl`
// does: a SignedData of version 1 with no digest algorithms, an id-data
// encapsulated content without content, one or more certificates, no CRLs
// and no signers. Anything else, a signed message included, is refused
// with fault.InvalidArgument: what a device reads here becomes its trust
// anchors or its certificate, so only the one shape is taken, and only
// within MaxCertsOnlyBytes and MaxCertsOnlyCerts.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: empty message")
	}
	if len(der) > MaxCertsOnlyBytes {
		return nil, fault.New(fault.InvalidArgument, "certs-only: message is larger than %d bytes", MaxCertsOnlyBytes)
	}
	// ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
	ci, err := element(der, asn1.ClassUniversal, asn1.TagSequence, "ContentInfo")
	if err != nil {
		return nil, err
	}
	var oid asn1.ObjectIdentifier
	rest, err := oidIn(ci, &oid, "ContentInfo contentType")
	if err != nil {
		return nil, err
	}
	if !oid.Equal(oidSignedData) {
		return nil, fault.New(fault.InvalidArgument, "certs-only: content type %v is not signedData", oid)
	}
	explicit, err := element(rest, asn1.ClassContextSpecific, 0, "ContentInfo content")
	if err != nil {
		return nil, err
	}
	sd, err := element(explicit, asn1.ClassUniversal, asn1.TagSequence, "SignedData")
	if err != nil {
		return nil, err
	}
	return parseSignedData(sd)
}

// parseSignedData reads the fields of a certs-only SignedData, in order.
func parseSignedData(sd []byte) ([]*x509.Certificate, error) {
	var version int
	rest, err := asn1.Unmarshal(sd, &version)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "certs-only: SignedData version does not parse")
	}
	if version != 1 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: SignedData version %d, want 1", version)
	}
	digests, rest, err := next(rest, asn1.ClassUniversal, asn1.TagSet, "digestAlgorithms")
	if err != nil {
		return nil, err
	}
	if len(digests) != 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: digestAlgorithms is not empty (a signed message)")
	}
	encap, rest, err := next(rest, asn1.ClassUniversal, asn1.TagSequence, "encapContentInfo")
	if err != nil {
		return nil, err
	}
	var eType asn1.ObjectIdentifier
	eRest, err := oidIn(encap, &eType, "encapContentInfo eContentType")
	if err != nil {
		return nil, err
	}
	if !eType.Equal(oidData) || len(eRest) != 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: the encapsulated content must be id-data without content")
	}
	set, rest, err := next(rest, asn1.ClassContextSpecific, 0, "certificates")
	if err != nil {
		return nil, err
	}
	certs, err := parseCertSet(set)
	if err != nil {
		return nil, err
	}
	signers, rest, err := next(rest, asn1.ClassUniversal, asn1.TagSet, "signerInfos")
	if err != nil {
		// A CRLs field ([1]) in front of signerInfos lands here too.
		return nil, err
	}
	if len(signers) != 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: signerInfos is not empty (a signed message)")
	}
	if len(rest) != 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: data after signerInfos")
	}
	return certs, nil
}

// parseCertSet reads the certificates field's contents: X.509
// certificates only (no attribute or other certificate choices).
func parseCertSet(set []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for len(set) > 0 {
		if len(certs) == MaxCertsOnlyCerts {
			return nil, fault.New(fault.InvalidArgument, "certs-only: more than %d certificates", MaxCertsOnlyCerts)
		}
		var raw asn1.RawValue
		rest, err := asn1.Unmarshal(set, &raw)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "certs-only: certificate %d does not parse", len(certs)+1)
		}
		if raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagSequence || !raw.IsCompound {
			return nil, fault.New(fault.InvalidArgument, "certs-only: element %d of certificates is not an X.509 certificate", len(certs)+1)
		}
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "certs-only: certificate %d does not parse", len(certs)+1)
		}
		certs = append(certs, c)
		set = rest
	}
	if len(certs) == 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: no certificate")
	}
	return certs, nil
}

// element reads der as exactly one constructed element of the given class
// and tag and returns its contents.
func element(der []byte, class, tag int, what string) ([]byte, error) {
	body, rest, err := next(der, class, tag, what)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fault.New(fault.InvalidArgument, "certs-only: data after %s", what)
	}
	return body, nil
}

// next reads one constructed element of the given class and tag from the
// front of der and returns its contents and what follows it.
func next(der []byte, class, tag int, what string) (body, rest []byte, err error) {
	var raw asn1.RawValue
	rest, err = asn1.Unmarshal(der, &raw)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.InvalidArgument, "certs-only: %s does not parse", what)
	}
	if raw.Class != class || raw.Tag != tag || !raw.IsCompound {
		return nil, nil, fault.New(fault.InvalidArgument, "certs-only: %s missing or of the wrong type", what)
	}
	return raw.Bytes, rest, nil
}

// oidIn reads an OBJECT IDENTIFIER from the front of der.
func oidIn(der []byte, oid *asn1.ObjectIdentifier, what string) ([]byte, error) {
	if len(der) == 0 || der[0] != asn1.TagOID {
		return nil, fault.New(fault.InvalidArgument, "certs-only: %s missing", what)
	}
	rest, err := asn1.Unmarshal(der, oid)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "certs-only: %s does not parse", what)
	}
	return rest, nil
}
