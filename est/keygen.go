package est

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// ServerKeyType is the key type serverkeygen generates for a profile that
// allows keyTypes: P-256 when it is allowed (small, fast, what device
// stacks expect), else the first allowed. "" when none is known.
func ServerKeyType(keyTypes []string) string {
	if slices.Contains(keyTypes, "P-256") {
		return "P-256"
	}
	for _, kt := range keyTypes {
		if enroll.ValidKeyType(kt) {
			return kt
		}
	}
	return ""
}

// keyAndCSR generates the key a profile allowing keyTypes gets and a PEM
// CSR for it with client's subject (the device id may come from its
// serialNumber); nothing else of client's CSR is carried over, as the CA
// would not copy it either.
func keyAndCSR(keyTypes []string, client *x509.CertificateRequest) (crypto.Signer, []byte, error) {
	kt := ServerKeyType(keyTypes)
	// The client's CSR key says which type it wants (RFC 7030 §4.4.1.2):
	// honoured when the profile allows it, so a P-384 request is not
	// silently answered with P-256.
	want := ca.KeyType(client.PublicKey)
	if strings.HasPrefix(want, "RSA-") {
		want = "RSA" // a profile's RSA is any size; the server makes MinRSABits
	}
	if want != "" && slices.Contains(keyTypes, want) {
		kt = want
	}
	if kt == "" {
		return nil, nil, fault.New(fault.KeyTypeNotAllowed, "the profile allows no key type the server can generate")
	}
	gen := kt
	if kt == "RSA" {
		// The least a profile accepts: a device that wants more makes its own.
		gen = fmt.Sprintf("RSA-%d", enroll.MinRSABits)
	}
	key, err := ca.GenerateKey(gen)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.Internal, "generate a %s key", kt)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: client.RawSubject}, key)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.Internal, "sign the CSR for the server's key")
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Media types of serverkeygen's answer parts (RFC 7030 §4.4.2).
const (
	mediaPKCS8     = "application/pkcs8"
	mediaCertsOnly = "application/pkcs7-mime; smime-type=certs-only"
)

// ServerKeygenBody encodes serverkeygen's answer (RFC 7030 §4.4.2): a
// multipart/mixed body with a random boundary, first the private key as
// unencrypted PKCS#8 (TLS protects it; the client asked for no other
// encryption), then the certificate as certs-only, both base64. It returns
// the body and its Content-Type.
func ServerKeygenBody(key crypto.Signer, cert *x509.Certificate) ([]byte, string, error) {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	defer clear(pkcs8)
	certs, err := CertsOnly([]*x509.Certificate{cert})
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf) // a random boundary
	for _, part := range []struct {
		mediaType string
		der       []byte
	}{{mediaPKCS8, pkcs8}, {mediaCertsOnly, certs}} {
		pw, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {part.mediaType},
			"Content-Transfer-Encoding": {"base64"}})
		if err != nil {
			return nil, "", err
		}
		b64 := encodeBase64(part.der)
		_, err = pw.Write(b64)
		clear(b64)
		if err != nil {
			return nil, "", err
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "multipart/mixed; boundary=" + w.Boundary(), nil
}

// The CSR attributes by which a serverkeygen client asks for its key
// encrypted beyond TLS (RFC 7030 §4.4.1.1 and §4.4.1.2: id-aa 37 and 54).
var (
	oidDecryptKeyID      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 37}
	oidAsymmDecryptKeyID = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 54}
)

// checkKeyDelivery refuses a serverkeygen CSR that asks for the key
// encrypted beyond TLS: this server does not do that, and answering such a
// client with a key it did not ask to get in the clear would break its
// policy quietly.
func checkKeyDelivery(csr *x509.CertificateRequest) error {
	types, err := AttributeTypes(csr.RawTBSCertificateRequest)
	if err != nil {
		return fault.New(fault.CSRInvalid, "csr attributes: %v", err)
	}
	for _, t := range types {
		if t.Equal(oidDecryptKeyID) || t.Equal(oidAsymmDecryptKeyID) {
			return fault.New(NotImplemented,
				"serverkeygen does not encrypt the key beyond TLS: send the CSR without DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier")
		}
	}
	return nil
}

// AttributeTypes returns the attribute types of a DER
// CertificationRequestInfo (RFC 2986): Go's parser keeps only the
// attributes it understands, so they are read from the raw request info.
//
//	SEQUENCE { version INTEGER, subject Name, subjectPKInfo SEQUENCE,
//	           attributes [0] IMPLICIT SET OF SEQUENCE { type OID, values SET } }
func AttributeTypes(tbsDER []byte) ([]asn1.ObjectIdentifier, error) {
	in := cryptobyte.String(tbsDER)
	var tbs, attrs cryptobyte.String
	var hasAttrs bool
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("request info is not one SEQUENCE")
	}
	if !tbs.SkipASN1(cbasn1.INTEGER) || !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) {
		return nil, errors.New("malformed request info")
	}
	if !tbs.ReadOptionalASN1(&attrs, &hasAttrs, cbasn1.Tag(0).ContextSpecific().Constructed()) || !tbs.Empty() {
		return nil, errors.New("malformed attributes")
	}
	var out []asn1.ObjectIdentifier
	for !attrs.Empty() {
		var attr cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.SkipASN1(cbasn1.SET) || !attr.Empty() {
			return nil, errors.New("malformed attribute")
		}
		out = append(out, oid)
	}
	return out, nil
}
