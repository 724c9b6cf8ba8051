package estclient

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// ParseServerKeygen reads a serverkeygen answer (RFC 7030 §4.4.2): a
// multipart/mixed body of exactly two parts, the private key as
// application/pkcs8 and its certificate as a certs-only
// application/pkcs7-mime, each base64. The certificate must be for the key.
// A key encrypted for the client (smime-type=server-generated-key) is
// refused: this client asks for none. Errors are BadResponse.
func ParseServerKeygen(contentType string, body []byte) (ServerKey, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return ServerKey{}, fault.New(BadResponse, "serverkeygen: the EST server answered %q, want multipart/mixed with a boundary",
			printable(contentType, 128))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var pkcs8 []byte
	var certs []*x509.Certificate
	for n := 0; ; n++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ServerKey{}, fault.Wrap(err, BadResponse, "serverkeygen: the multipart body does not parse")
		}
		if n == 2 {
			return ServerKey{}, fault.New(BadResponse, "serverkeygen: more than two parts")
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return ServerKey{}, fault.Wrap(err, BadResponse, "serverkeygen: part %d does not parse", n+1)
		}
		switch kind, err := partKind(part.Header); {
		case err != nil:
			return ServerKey{}, err
		case kind == "key" && pkcs8 == nil:
			if pkcs8, err = decodeBase64(data); err != nil {
				return ServerKey{}, err
			}
		case kind == "certs" && certs == nil:
			if certs, err = certsOnly("application/pkcs7-mime; smime-type=certs-only", data); err != nil {
				return ServerKey{}, err
			}
		default:
			return ServerKey{}, fault.New(BadResponse, "serverkeygen: two %s parts", kind)
		}
	}
	if pkcs8 == nil || certs == nil {
		return ServerKey{}, fault.New(BadResponse, "serverkeygen: the answer lacks the key or the certificate part")
	}
	k, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return ServerKey{}, fault.Wrap(err, BadResponse, "serverkeygen: the key does not parse as PKCS#8")
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return ServerKey{}, fault.New(BadResponse, "serverkeygen: unsupported key type %T", k)
	}
	cert, err := certFor(certs, signer.Public())
	if err != nil {
		return ServerKey{}, err
	}
	return ServerKey{Key: signer, PKCS8: pkcs8, Certificate: cert}, nil
}

// partKind names a serverkeygen part by its Content-Type: "key" or "certs".
func partKind(h textproto.MIMEHeader) (string, error) {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
	case mt == "application/pkcs8":
		return "key", nil
	case mt == "application/pkcs7-mime" && strings.EqualFold(params["smime-type"], "server-generated-key"):
		return "", fault.New(BadResponse, "serverkeygen: the key is encrypted for the client (server-generated-key), which this client does not ask for")
	case mt == "application/pkcs7-mime" && (params["smime-type"] == "" || strings.EqualFold(params["smime-type"], "certs-only")):
		return "certs", nil
	}
	return "", fault.New(BadResponse, "serverkeygen: a part of type %q, want application/pkcs8 or application/pkcs7-mime", printable(ct, 128))
}

// Attr is one element of a csrattrs answer: a bare OID (no Values) or an
// attribute with its values.
type Attr struct {
	OID    asn1.ObjectIdentifier
	Values []asn1.RawValue
}

// Bounds of ParseCSRAttrs.
const (
	maxCSRAttrsBytes = 64 << 10
	maxCSRAttrs      = 256
)

// ParseCSRAttrs reads a DER CsrAttrs (RFC 7030 §4.5.2): a SEQUENCE of OIDs
// and attributes {OID, SET OF values}. Errors are fault.InvalidArgument.
func ParseCSRAttrs(der []byte) ([]Attr, error) {
	if len(der) > maxCSRAttrsBytes {
		return nil, fault.New(fault.InvalidArgument, "CsrAttrs is larger than %d bytes", maxCSRAttrsBytes)
	}
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, fault.New(fault.InvalidArgument, "CsrAttrs is not one DER SEQUENCE")
	}
	var out []Attr
	for in := seq.Bytes; len(in) > 0; {
		if len(out) == maxCSRAttrs {
			return nil, fault.New(fault.InvalidArgument, "CsrAttrs has more than %d elements", maxCSRAttrs)
		}
		var el asn1.RawValue
		rest, err := asn1.Unmarshal(in, &el)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "CsrAttrs element %d does not parse", len(out)+1)
		}
		var a Attr
		switch {
		case el.Class == asn1.ClassUniversal && el.Tag == asn1.TagOID:
			if _, err := asn1.Unmarshal(el.FullBytes, &a.OID); err != nil {
				return nil, fault.Wrap(err, fault.InvalidArgument, "CsrAttrs element %d: bad OID", len(out)+1)
			}
		case el.Class == asn1.ClassUniversal && el.Tag == asn1.TagSequence:
			var attr struct {
				Type   asn1.ObjectIdentifier
				Values []asn1.RawValue `asn1:"set"`
			}
			if r, err := asn1.Unmarshal(el.FullBytes, &attr); err != nil || len(r) != 0 || len(attr.Values) == 0 {
				return nil, fault.New(fault.InvalidArgument, "CsrAttrs element %d is not an attribute {OID, SET OF values}", len(out)+1)
			}
			a = Attr{OID: attr.Type, Values: attr.Values}
		default:
			return nil, fault.New(fault.InvalidArgument, "CsrAttrs element %d is neither an OID nor an attribute", len(out)+1)
		}
		out = append(out, a)
		in = rest
	}
	return out, nil
}

// Key-type OIDs a csrattrs answer names (RFC 5480, RFC 8410).
var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256          = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384          = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// KeyTypes is what attrs say about the key: Gatehouse's key type names
// ("P-256", "P-384", "RSA", "Ed25519") in the server's order, from bare
// OIDs and from the curves of an id-ecPublicKey attribute. Nil when attrs
// say nothing about keys.
func KeyTypes(attrs []Attr) []string {
	var out []string
	add := func(o asn1.ObjectIdentifier) {
		var name string
		switch {
		case o.Equal(oidP256):
			name = "P-256"
		case o.Equal(oidP384):
			name = "P-384"
		case o.Equal(oidRSAEncryption):
			name = "RSA"
		case o.Equal(oidEd25519):
			name = "Ed25519"
		default:
			return
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, a := range attrs {
		if !a.OID.Equal(oidECPublicKey) {
			add(a.OID)
			continue
		}
		for _, v := range a.Values {
			var curve asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(v.FullBytes, &curve); err == nil && len(rest) == 0 {
				add(curve)
			}
		}
	}
	return out
}
