package est

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// ParseCSR reads an EST enrollment body: a base64 DER PKCS#10 request sent
// as application/pkcs10 (RFC 7030 §4.2.1). The request must parse and its
// signature verify; enroll.Service verifies it again before signing, but a
// request with a bad signature must fail here, as a client mistake, before
// a token is claimed. It returns the request as PEM, the form
// enroll.Service takes.
func ParseCSR(contentType, transferEncoding string, body []byte) (*x509.CertificateRequest, []byte, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/pkcs10" {
		return nil, nil, fault.New(fault.InvalidArgument, "content type must be application/pkcs10")
	}
	if te := strings.TrimSpace(transferEncoding); te != "" && !strings.EqualFold(te, "base64") {
		return nil, nil, fault.New(fault.InvalidArgument, "content-transfer-encoding must be base64")
	}
	der, err := DecodeBase64(body)
	if err != nil {
		return nil, nil, err
	}
	if len(der) == 0 {
		return nil, nil, fault.New(fault.CSRInvalid, "csr is required")
	}
	if len(der) > enroll.MaxCSRBytes {
		return nil, nil, fault.New(fault.CSRInvalid, "csr is larger than %d bytes", enroll.MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.CSRInvalid, "csr does not parse as PKCS#10")
	}
	// Checked before the signature: a huge RSA key would make verifying it
	// the expensive part of a request anyone can send.
	if k, ok := csr.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() > enroll.MaxRSABits {
		return nil, nil, fault.New(fault.KeyTypeNotAllowed, "RSA keys must be %d to %d bits", enroll.MinRSABits, enroll.MaxRSABits)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fault.Wrap(err, fault.CSRInvalid, "csr signature does not verify")
	}
	return csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// DecodeBase64 decodes a base64 EST body with the line breaks (CRLF or LF)
// and other whitespace RFC 2045 allows. Padding may be left off, as some
// device stacks do. Both ends of EST read bodies with it (estclient).
func DecodeBase64(body []byte) ([]byte, error) {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			clean = append(clean, c)
		}
	}
	enc := base64.StdEncoding
	if len(clean)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	der := make([]byte, enc.DecodedLen(len(clean)))
	n, err := enc.Decode(der, clean)
	if err != nil {
		return nil, fault.New(fault.InvalidArgument, "body is not base64")
	}
	return der[:n], nil
}

// readBody reads the request body, which the route's limit caps.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fault.New(fault.BodyTooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case err != nil:
		return nil, fault.Wrap(err, fault.InvalidArgument, "read the request body")
	}
	return b, nil
}

// parseChain decodes the CA's PEM chain.
func parseChain(pemData []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, pemData = pem.Decode(pemData)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}
