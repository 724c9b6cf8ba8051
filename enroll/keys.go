package enroll

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Key type names a profile may allow. RSA means RSA with at least
// MinRSABits; smaller RSA keys are refused whatever a profile says.
var KeyTypes = []string{"P-256", "P-384", "Ed25519", "RSA"}

// RSA key size bounds. The upper bound keeps a hostile CSR from making the
// server verify an absurdly large key.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// MaxCSRBytes bounds a PEM CSR; real ones are well under 4 KiB.
const MaxCSRBytes = 16 << 10

// ValidKeyType reports whether name is a key type a profile can allow.
func ValidKeyType(name string) bool { return slices.Contains(KeyTypes, name) }

// keyAllowed checks pub against a profile's allowed key types.
func keyAllowed(allowed []string, pub crypto.PublicKey) error {
	kt := ca.KeyType(pub)
	if k, ok := pub.(*rsa.PublicKey); ok {
		bits := k.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return fault.New(fault.KeyTypeNotAllowed, "RSA keys must be %d to %d bits, got %d", MinRSABits, MaxRSABits, bits)
		}
		kt = "RSA"
	}
	if kt == "" {
		return fault.New(fault.KeyTypeNotAllowed, "unsupported key type")
	}
	if !slices.Contains(allowed, kt) {
		return fault.New(fault.KeyTypeNotAllowed, "key type %s is not allowed by the profile (allowed: %s)", kt, strings.Join(allowed, ", "))
	}
	return nil
}

// ParseCSR decodes one PEM certificate request and verifies its signature.
func ParseCSR(pemData []byte) (*x509.CertificateRequest, error) { return parseCSR(pemData, true) }

func parseCSR(pemData []byte, verify bool) (*x509.CertificateRequest, error) {
	if len(pemData) == 0 {
		return nil, fault.New(fault.CSRInvalid, "csr is required")
	}
	if len(pemData) > MaxCSRBytes {
		return nil, fault.New(fault.CSRInvalid, "csr is larger than %d bytes", MaxCSRBytes)
	}
	block, rest := pem.Decode(pemData)
	if block == nil {
		return nil, fault.New(fault.CSRInvalid, "csr is not PEM")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fault.New(fault.CSRInvalid, "PEM block is %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fault.New(fault.CSRInvalid, "csr has data after the PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fault.Wrap(err, fault.CSRInvalid, "csr does not parse")
	}
	if k, ok := csr.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() > MaxRSABits {
		return nil, fault.New(fault.KeyTypeNotAllowed, "RSA keys must be %d to %d bits", MinRSABits, MaxRSABits)
	}
	if verify {
		if err := csr.CheckSignature(); err != nil {
			return nil, fault.Wrap(err, fault.CSRInvalid, "csr signature does not verify")
		}
	}
	return csr, nil
}

// ParseCertificatePEM decodes one PEM certificate.
func ParseCertificatePEM(pemData []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fault.New(fault.CertInvalid, "certificate is not a PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fault.Wrap(err, fault.CertInvalid, "certificate does not parse")
	}
	return c, nil
}
