package est

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The OIDs EST answers are built from (RFC 5652, RFC 5480, RFC 8410).
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256          = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384          = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// CertsOnly encodes certs as a PKCS#7 "certs-only" message: a degenerate
// SignedData with no content and no signers (RFC 7030 §4.1.3, RFC 5652 §5).
// It is built here rather than with a PKCS#7 library because the
// structure is fixed and small, and nothing above package ca may hold a
// smallstep type.
func CertsOnly(certs []*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("est: no certificates to encode")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
				b.AddASN1Int64(1)                                   // version
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // digestAlgorithms
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData) // encapContentInfo, no content
				})
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c.Raw)
					}
				})
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // signerInfos
			})
		})
	})
	return b.Bytes()
}

// CSRAttrs encodes a profile's allowed key types as CsrAttrs (RFC 7030
// §4.5.2): rsaEncryption and id-Ed25519 as bare OIDs, the allowed curves
// as one id-ecPublicKey attribute whose values are the curve OIDs. Nil
// when there is nothing to say (the handler then answers 204).
func CSRAttrs(keyTypes []string) ([]byte, error) {
	var curves, bare []asn1.ObjectIdentifier
	for _, kt := range keyTypes {
		switch kt {
		case "P-256":
			curves = append(curves, oidP256)
		case "P-384":
			curves = append(curves, oidP384)
		case "RSA":
			bare = append(bare, oidRSAEncryption)
		case "Ed25519":
			bare = append(bare, oidEd25519)
		}
	}
	if len(curves) == 0 && len(bare) == 0 {
		return nil, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(curves) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Attribute
				b.AddASN1ObjectIdentifier(oidECPublicKey)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for _, c := range sortedOIDs(curves) {
						b.AddBytes(c)
					}
				})
			})
		}
		for _, o := range bare {
			b.AddASN1ObjectIdentifier(o)
		}
	})
	return b.Bytes()
}

// sortedOIDs encodes oids in the order DER requires of a SET OF: by their
// encodings.
func sortedOIDs(oids []asn1.ObjectIdentifier) [][]byte {
	out := make([][]byte, 0, len(oids))
	for _, o := range oids {
		der, err := asn1.Marshal(o)
		if err == nil {
			out = append(out, der)
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// encodeBase64 is the base64 transfer encoding of an EST body, in lines of
// 64 characters: RFC 2045 limits lines to 76, and `openssl base64 -d`
// refuses longer ones without -A.
func encodeBase64(der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var out strings.Builder
	out.Grow(len(s) + len(s)/64 + 1)
	for len(s) > 64 {
		out.WriteString(s[:64])
		out.WriteByte('\n')
		s = s[64:]
	}
	out.WriteString(s)
	out.WriteByte('\n')
	return []byte(out.String())
}
