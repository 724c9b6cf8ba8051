// Package testpki makes device keys and CSRs for tests.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"testing"
)

// Key generates a key of the named type: P-256, P-384, Ed25519, RSA-1024,
// RSA-2048, RSA-3072.
func Key(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "P-256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P-384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "P-224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "Ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "RSA-1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "RSA-2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "RSA-3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CSR returns a DER CSR for key. The subject and SANs are deliberately
// hostile so tests can check that the CA never copies them.
func CSR(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	evil, _ := url.Parse("urn:gatehouse:other:admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "evil-admin", Organization: []string{"Evil"}},
		DNSNames:       []string{"evil.example"},
		EmailAddresses: []string{"root@evil.example"},
		URIs:           []*url.URL{evil},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// CSRSubject returns a DER CSR for key with subject alone: for tests of
// what is read from a subject (its serialNumber as the device id).
func CSRSubject(t testing.TB, key crypto.Signer, subject pkix.Name) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// CSRPEM returns CSR as PEM.
func CSRPEM(t testing.TB, key crypto.Signer) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: CSR(t, key)}))
}

// ParseCSR parses a DER CSR.
func ParseCSR(t testing.TB, der []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// KeyPEM encodes a private key as unencrypted PKCS#8 PEM (tests only).
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
