package ocsp

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"time"
)

// Wire structures of RFC 6960 §4.1 (request) and §4.2 (response), in the
// shape encoding/asn1 reads and writes.

var (
	oidNonce         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidBasicResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// hashes are the CertID hash algorithms the responder accepts.
var hashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oidSHA1, crypto.SHA1},
	{oidSHA256, crypto.SHA256},
	{oidSHA384, crypto.SHA384},
	{oidSHA512, crypto.SHA512},
}

type ocspRequest struct {
	TBSRequest tbsRequest
	Signature  asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type tbsRequest struct {
	Version       int           `asn1:"explicit,tag:0,default:0,optional"`
	RequestorName asn1.RawValue `asn1:"explicit,tag:1,optional"`
	RequestList   []singleRequest
	Extensions    []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

type singleRequest struct {
	CertID     certID
	Extensions []pkix.Extension `asn1:"explicit,tag:0,optional"`
}

type certID struct {
	Raw            asn1.RawContent
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
}

type ocspResponse struct {
	Status   asn1.Enumerated
	Response responseBytes `asn1:"explicit,tag:0"`
}

type responseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type basicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	ResponderID        asn1.RawValue
	ProducedAt         time.Time `asn1:"generalized"`
	Responses          []singleResponse
	ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type singleResponse struct {
	CertID     asn1.RawValue
	CertStatus asn1.RawValue
	ThisUpdate time.Time `asn1:"generalized"`
	NextUpdate time.Time `asn1:"generalized,explicit,tag:0,optional"`
}

type revokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

// certStatus encodes the CertStatus CHOICE: good [0] IMPLICIT NULL,
// revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT NULL.
func certStatus(s Status, at time.Time, reason int) (asn1.RawValue, error) {
	switch s {
	case Good:
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0}, nil
	case Unknown:
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2}, nil
	case Revoked:
		// reason 0 (unspecified) is left out, as RFC 5280 §5.3.1 asks of CRLs.
		inner, err := asn1.Marshal(revokedInfo{RevocationTime: at.UTC().Truncate(time.Second), Reason: asn1.Enumerated(reason)})
		if err != nil {
			return asn1.RawValue{}, err
		}
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(inner, &seq); err != nil {
			return asn1.RawValue{}, err
		}
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: seq.Bytes}, nil
	}
	return asn1.RawValue{}, errors.New("ocsp: unknown status")
}

// errorResponse is an OCSPResponse with only a status: SEQUENCE { ENUMERATED n }.
func errorResponse(s ResponseStatus) []byte { return []byte{0x30, 0x03, 0x0a, 0x01, byte(s)} }
