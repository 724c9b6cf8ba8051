package idevid

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
)

var (
	oidSubjectAltName     = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSerialNumber       = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCommonName         = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}
)

// idFroms lists every IDFrom in the order error messages name them.
var idFroms = []IDFrom{FromSerialNumber, FromCN, FromSANDNS, FromSANURI, FromHardwareModule}

func idFromList() string {
	s := make([]string, len(idFroms))
	for i, f := range idFroms {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// rawID is the value DeriveID prefixes. Subject attributes that occur more
// than once are refused rather than picked from: which one a device "means"
// is not ours to guess, and a vendor's CA never issues such names.
func rawID(cert *x509.Certificate, from IDFrom) (string, error) {
	switch from {
	case FromSerialNumber:
		return subjectAttr(cert, oidSerialNumber, cert.Subject.SerialNumber, "subject serialNumber")
	case FromCN:
		return subjectAttr(cert, oidCommonName, cert.Subject.CommonName, "subject common name")
	case FromSANDNS:
		if len(cert.DNSNames) == 0 {
			return "", fault.New(Invalid, "the IDevID has no DNS name SAN to derive the device id from")
		}
		return cert.DNSNames[0], nil
	case FromSANURI:
		if len(cert.URIs) == 0 || cert.URIs[0] == nil {
			return "", fault.New(Invalid, "the IDevID has no URI SAN to derive the device id from")
		}
		u := cert.URIs[0].String()
		return u[strings.LastIndexAny(u, ":/")+1:], nil
	case FromHardwareModule:
		serial, err := hardwareModuleSerial(cert)
		if err != nil {
			return "", err
		}
		// Text when the bytes already are a device id (a printable serial
		// like "SN-0042"), else hex (a binary serial): never raw bytes.
		if deviceid.Valid(string(serial)) {
			return string(serial), nil
		}
		return hex.EncodeToString(serial), nil
	default:
		return "", fault.New(Invalid, "vendor id_from %q is not one of %s", clip(string(from)), idFromList())
	}
}

// subjectAttr reads attribute oid from the parsed subject's Names; single
// is the value crypto/x509 picked, used only for a certificate built in
// memory without Names.
func subjectAttr(cert *x509.Certificate, oid asn1.ObjectIdentifier, single, what string) (string, error) {
	if len(cert.Subject.Names) == 0 && single != "" {
		return single, nil
	}
	var values []string
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oid) {
			s, ok := atv.Value.(string)
			if !ok {
				return "", fault.New(Invalid, "the IDevID's %s is not a string", what)
			}
			values = append(values, s)
		}
	}
	switch len(values) {
	case 0:
		return "", fault.New(Invalid, "the IDevID has no %s to derive the device id from", what)
	case 1:
		return values[0], nil
	default:
		return "", fault.New(Invalid, "the IDevID has %d %s attributes: which one is the device is ambiguous", len(values), what)
	}
}

// hardwareModuleSerial returns the hwSerialNum of cert's one
// hardwareModuleName otherName SAN (RFC 4108 §5). crypto/x509 skips
// otherNames, so the extension is read here.
func hardwareModuleSerial(cert *x509.Certificate) ([]byte, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		serials, err := parseHardwareModuleNames(ext.Value)
		if err != nil {
			return nil, fault.Wrap(err, Invalid, "the IDevID's subjectAltName is malformed")
		}
		switch len(serials) {
		case 0:
		case 1:
			if len(serials[0]) == 0 {
				return nil, fault.New(Invalid, "the IDevID's hardwareModuleName has an empty hwSerialNum")
			}
			return serials[0], nil
		default:
			return nil, fault.New(Invalid, "the IDevID has %d hardwareModuleName SANs: which one is the device is ambiguous", len(serials))
		}
	}
	return nil, fault.New(Invalid, "the IDevID has no hardwareModuleName SAN (%s) to derive the device id from", oidHardwareModuleName)
}

var errSAN = errors.New("idevid: malformed subjectAltName")

// parseHardwareModuleNames returns the hwSerialNum of every
// hardwareModuleName in a subjectAltName extension value:
//
//	GeneralNames ::= SEQUENCE OF GeneralName
//	GeneralName  ::= otherName [0] IMPLICIT SEQUENCE {
//	    type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY } | ...
//	HardwareModuleName ::= SEQUENCE {
//	    hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
//
// Other name forms are skipped; trailing bytes anywhere are an error.
func parseHardwareModuleNames(der []byte) ([][]byte, error) {
	in := cryptobyte.String(der)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errSAN
	}
	var serials [][]byte
	otherName := cbasn1.Tag(0).ContextSpecific().Constructed()
	for !names.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&gn, &tag) {
			return nil, errSAN
		}
		if tag != otherName {
			continue
		}
		var typeID asn1.ObjectIdentifier
		var explicit cryptobyte.String
		if !gn.ReadASN1ObjectIdentifier(&typeID) || !gn.ReadASN1(&explicit, cbasn1.Tag(0).ContextSpecific().Constructed()) || !gn.Empty() {
			return nil, errSAN
		}
		if !typeID.Equal(oidHardwareModuleName) {
			continue
		}
		var hmn cryptobyte.String
		var hwType asn1.ObjectIdentifier
		var serial cryptobyte.String
		if !explicit.ReadASN1(&hmn, cbasn1.SEQUENCE) || !explicit.Empty() ||
			!hmn.ReadASN1ObjectIdentifier(&hwType) || !hmn.ReadASN1(&serial, cbasn1.OCTET_STRING) || !hmn.Empty() {
			return nil, errSAN
		}
		serials = append(serials, []byte(serial))
	}
	return serials, nil
}

// clip keeps an error message short whatever a certificate carried; %q
// makes it printable.
func clip(s string) string {
	if len(s) > 72 {
		s = s[:72] + "…"
	}
	return s
}
