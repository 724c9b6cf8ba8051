package enroll

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// ChallengePrefix marks a renewal challenge (a nonce, not a credential).
const ChallengePrefix = "ghc_"

// maxChallengeLen is PKCS#9's upper bound for a challengePassword.
const maxChallengeLen = 255

// oidChallengePassword is PKCS#9 challengePassword (RFC 2985 5.4.1), the
// CSR attribute meant for exactly this: a secret from the CA, signed into
// the request by the requester's key (SCEP carries its challenge the same
// way). openssl writes it from a config's [req_attributes].
var oidChallengePassword = encasn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

// ChallengeOf returns the challengePassword a CSR carries, and whether it
// carries one. Go's parser drops the attribute (it only understands
// extension requests), so it is read from the raw request info here. A
// malformed attribute, a second challengePassword or a value that is not
// one UTF8String, PrintableString or IA5String of 1 to 255 valid UTF-8
// bytes is csr_invalid: an ambiguous proof is no proof.
func ChallengeOf(csr *x509.CertificateRequest) (string, bool, error) {
	v, ok, err := challengeFromTBS(csr.RawTBSCertificateRequest)
	if err != nil {
		return "", false, fault.New(fault.CSRInvalid, "csr attributes: %v", err)
	}
	return v, ok, nil
}

// challengeFromTBS parses a DER CertificationRequestInfo (RFC 2986):
//
//	SEQUENCE { version INTEGER, subject Name, subjectPKInfo SEQUENCE,
//	           attributes [0] IMPLICIT SET OF SEQUENCE { type OID, values SET } }
func challengeFromTBS(der []byte) (string, bool, error) {
	in := cryptobyte.String(der)
	var tbs, attrs cryptobyte.String
	var hasAttrs bool
	if !in.ReadASN1(&tbs, asn1.SEQUENCE) || !in.Empty() {
		return "", false, errors.New("request info is not one SEQUENCE")
	}
	if !tbs.SkipASN1(asn1.INTEGER) || !tbs.SkipASN1(asn1.SEQUENCE) || !tbs.SkipASN1(asn1.SEQUENCE) {
		return "", false, errors.New("malformed request info")
	}
	if !tbs.ReadOptionalASN1(&attrs, &hasAttrs, asn1.Tag(0).ContextSpecific().Constructed()) || !tbs.Empty() {
		return "", false, errors.New("malformed attributes")
	}
	var (
		value string
		found bool
	)
	for !attrs.Empty() {
		var attr, values cryptobyte.String
		var oid encasn1.ObjectIdentifier
		if !attrs.ReadASN1(&attr, asn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.ReadASN1(&values, asn1.SET) || !attr.Empty() {
			return "", false, errors.New("malformed attribute")
		}
		if !oid.Equal(oidChallengePassword) {
			continue
		}
		if found {
			return "", false, errors.New("more than one challengePassword")
		}
		var v cryptobyte.String
		var tag asn1.Tag
		if !values.ReadAnyASN1(&v, &tag) || !values.Empty() {
			return "", false, errors.New("want exactly one value")
		}
		switch tag {
		case asn1.UTF8String, asn1.PrintableString, asn1.IA5String:
		default:
			return "", false, fmt.Errorf("value has ASN.1 tag %d, want a UTF8String", tag)
		}
		if len(v) == 0 || len(v) > maxChallengeLen || !utf8.Valid(v) {
			return "", false, errors.New("value must be 1 to 255 bytes of UTF-8")
		}
		value, found = string(v), true
	}
	return value, found, nil
}

// NewChallengeCSR returns a DER certificate request for key's public key
// with an empty subject that carries challenge as its challengePassword,
// signed by key. Go's x509 package cannot write that attribute, so the
// request info is built here and signed with the algorithm Go picks for key.
func NewChallengeCSR(key crypto.Signer, challenge string) ([]byte, error) {
	if challenge == "" || len(challenge) > maxChallengeLen || !utf8.ValidString(challenge) {
		return nil, errors.New("challenge must be 1 to 255 bytes of UTF-8")
	}
	// A plain request from Go gives the public key info and the signature
	// algorithm identifier in their canonical DER.
	plainDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	plain, err := x509.ParseCertificateRequest(plainDER)
	if err != nil {
		return nil, err
	}
	outer := cryptobyte.String(plainDER)
	var body, algID cryptobyte.String
	if !outer.ReadASN1(&body, asn1.SEQUENCE) || !body.SkipASN1(asn1.SEQUENCE) ||
		!body.ReadASN1Element(&algID, asn1.SEQUENCE) {
		return nil, errors.New("cannot read Go's certificate request")
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(asn1.SEQUENCE, func(*cryptobyte.Builder) {}) // empty subject
		b.AddBytes(plain.RawSubjectPublicKeyInfo)
		b.AddASN1(asn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidChallengePassword)
				b.AddASN1(asn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(asn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(challenge)) })
				})
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch plain.SignatureAlgorithm {
	case x509.PureEd25519:
		sig, err = key.Sign(rand.Reader, tbs, crypto.Hash(0))
		if _, ok := key.Public().(ed25519.PublicKey); !ok {
			err = errors.New("Ed25519 signature from a non-Ed25519 key")
		}
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		sig, err = signDigest(key, crypto.SHA256, tbs)
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		sig, err = signDigest(key, crypto.SHA384, tbs)
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		sig, err = signDigest(key, crypto.SHA512, tbs)
	default:
		err = fmt.Errorf("unsupported signature algorithm %s", plain.SignatureAlgorithm)
	}
	if err != nil {
		return nil, err
	}
	var out cryptobyte.Builder
	out.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(algID)
		b.AddASN1BitString(sig)
	})
	der, err := out.Bytes()
	if err != nil {
		return nil, err
	}
	// Never hand out a request the server would refuse.
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, err
	}
	return der, nil
}

func signDigest(key crypto.Signer, h crypto.Hash, msg []byte) ([]byte, error) {
	d := h.New()
	d.Write(msg)
	return key.Sign(rand.Reader, d.Sum(nil), h)
}
