package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidAKI       = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// header is what the "is the file newer?" check needs of a list.
type header struct {
	number     int64
	nextUpdate time.Time
}

// readHeader reads a DER list's number and nextUpdate, and checks that its
// issuer name and authority key identifier are issuer's (when issuer is
// set), without reading its entries: a million-entry list takes longer to
// parse in full than to write, and installCRL checks the file before each
// write. ok is false for anything that is not such a list.
func readHeader(der []byte, issuer *x509.Certificate) (h header, ok bool) {
	in := cryptobyte.String(der)
	var list, tbs, name cryptobyte.String
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) || !list.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return header{}, false
	}
	if tbs.PeekASN1Tag(cbasn1.INTEGER) && !tbs.SkipASN1(cbasn1.INTEGER) {
		return header{}, false
	}
	if !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.ReadASN1Element(&name, cbasn1.SEQUENCE) {
		return header{}, false
	}
	if issuer != nil && !bytes.Equal(name, issuer.RawSubject) {
		return header{}, false
	}
	var times []time.Time
	for len(times) < 2 {
		var t time.Time
		switch {
		case tbs.PeekASN1Tag(cbasn1.UTCTime):
			if !tbs.ReadASN1UTCTime(&t) {
				return header{}, false
			}
		case tbs.PeekASN1Tag(cbasn1.GeneralizedTime):
			if !tbs.ReadASN1GeneralizedTime(&t) {
				return header{}, false
			}
		default:
			return header{}, false // no nextUpdate: not a list we write
		}
		times = append(times, t)
	}
	h.nextUpdate = times[1]
	var exts cryptobyte.String
	var present bool
	if !tbs.SkipOptionalASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) || !present ||
		!exts.ReadASN1(&exts, cbasn1.SEQUENCE) {
		return header{}, false
	}
	h.number = -1
	var aki []byte
	for !exts.Empty() {
		var ext, val cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1(&val, cbasn1.OCTET_STRING) {
			return header{}, false
		}
		switch {
		case oid.Equal(oidCRLNumber):
			if !val.ReadASN1Integer(&h.number) {
				return header{}, false
			}
		case oid.Equal(oidAKI):
			var seq, id cryptobyte.String
			if !val.ReadASN1(&seq, cbasn1.SEQUENCE) ||
				!seq.ReadOptionalASN1(&id, &present, cbasn1.Tag(0).ContextSpecific()) {
				return header{}, false
			}
			aki = id
		}
	}
	if issuer != nil && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(aki, issuer.SubjectKeyId) {
		return header{}, false
	}
	return h, h.number >= 0
}
