package est

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"mime/multipart"
	"net/textproto"
	"slices"

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

// generateKey makes a key of type kt. RSA keys have enroll.MinRSABits,
// the least a profile accepts: a device that wants more makes its own.
func generateKey(kt string) (crypto.Signer, error) {
	switch kt {
	case "P-256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P-384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "Ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "RSA":
		return rsa.GenerateKey(rand.Reader, enroll.MinRSABits)
	}
	return nil, errors.New("est: no key type to generate")
}

// keyAndCSR generates the key a profile allowing keyTypes gets and a PEM
// CSR for it with client's subject (the device id may come from its
// serialNumber); nothing else of client's CSR is carried over, as the CA
// would not copy it either.
func keyAndCSR(keyTypes []string, client *x509.CertificateRequest) (crypto.Signer, []byte, error) {
	kt := ServerKeyType(keyTypes)
	if kt == "" {
		return nil, nil, fault.New(fault.KeyTypeNotAllowed, "the profile allows no key type the server can generate")
	}
	key, err := generateKey(kt)
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
