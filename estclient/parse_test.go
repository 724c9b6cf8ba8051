package estclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// part is one body part of a serverkeygen answer built in a test.
type part struct{ contentType, body string }

// multipartBody writes parts as RFC 7030 §4.4.2 has them, each with its
// transfer-encoding header, and returns the Content-Type and the body.
func multipartBody(t testing.TB, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.contentType)
		h.Set("Content-Transfer-Encoding", "base64")
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, p.body)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return "multipart/mixed; boundary=" + mw.Boundary(), buf.Bytes()
}

// keyAndCert is a key the "server" generated, PKCS#8 base64, and its
// certificate as a certs-only base64 (with the issuer before it).
func keyAndCert(t testing.TB, ca *pki) (crypto.Signer, part, part) {
	t.Helper()
	key := testpki.Key(t, "P-256")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := est.CertsOnly([]*x509.Certificate{ca.cert, ca.issue(t, "cam-2", key.Public())})
	if err != nil {
		t.Fatal(err)
	}
	return key, part{"application/pkcs8", wrap64(base64.StdEncoding.EncodeToString(der))},
		part{"application/pkcs7-mime; smime-type=certs-only", wrap64(base64.StdEncoding.EncodeToString(p7))}
}

func TestParseServerKeygen(t *testing.T) {
	ca := newPKI(t, "CA")
	key, keyPart, certPart := keyAndCert(t, ca)
	_, otherKey, otherCert := keyAndCert(t, ca)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(testpki.Key(t, "RSA-2048"))
	for _, tc := range []struct {
		name  string
		parts []part
		ct    string // overrides the multipart Content-Type
		code  fault.Code
	}{
		{name: "key then certificate", parts: []part{keyPart, certPart}},
		{name: "certificate then key", parts: []part{certPart, keyPart}},
		{name: "no smime-type", parts: []part{keyPart, {"application/pkcs7-mime", certPart.body}}},
		{name: "wrong outer type", parts: []part{keyPart, certPart}, ct: "application/pkcs7-mime", code: BadResponse},
		{name: "no boundary", parts: []part{keyPart, certPart}, ct: "multipart/mixed", code: BadResponse},
		{name: "wrong boundary", parts: []part{keyPart, certPart}, ct: "multipart/mixed; boundary=nope", code: BadResponse},
		{name: "key only", parts: []part{keyPart}, code: BadResponse},
		{name: "certificate only", parts: []part{certPart}, code: BadResponse},
		{name: "two keys", parts: []part{keyPart, otherKey, certPart}, code: BadResponse},
		{name: "three parts", parts: []part{keyPart, certPart, {"text/plain", "hi"}}, code: BadResponse},
		{name: "certificate for another key", parts: []part{keyPart, otherCert}, code: BadResponse},
		{name: "key for no certificate", parts: []part{{"application/pkcs8", base64.StdEncoding.EncodeToString(rsaDER)}, certPart}, code: BadResponse},
		{name: "encrypted key", parts: []part{{"application/pkcs7-mime; smime-type=server-generated-key", keyPart.body}, certPart}, code: BadResponse},
		{name: "unknown part", parts: []part{{"application/octet-stream", keyPart.body}, certPart}, code: BadResponse},
		{name: "key not base64", parts: []part{{"application/pkcs8", "%%%"}, certPart}, code: BadResponse},
		{name: "key not PKCS#8", parts: []part{{"application/pkcs8", base64.StdEncoding.EncodeToString([]byte("key"))}, certPart}, code: BadResponse},
		{name: "truncated PKCS#7", parts: []part{keyPart, {certPart.contentType, certPart.body[:len(certPart.body)/2]}}, code: BadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := multipartBody(t, tc.parts...)
			if tc.ct != "" {
				ct = tc.ct
			}
			got, err := ParseServerKeygen(ct, body)
			if tc.code != "" {
				if fault.CodeOf(err) != tc.code || got.Key != nil {
					t.Fatalf("%v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) ||
				got.Certificate.Subject.CommonName != "cam-2" || !got.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(got.Certificate.PublicKey) {
				t.Fatalf("key and certificate %s do not match what the server sent", got.Certificate.Subject)
			}
			if _, err := x509.ParsePKCS8PrivateKey(got.PKCS8); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestServerKeygen: the request goes out as simpleenroll's does, and the
// multipart answer comes back as a key and its certificate.
func TestServerKeygen(t *testing.T) {
	ca := newPKI(t, "CA")
	key, keyPart, certPart := keyAndCert(t, ca)
	f := newFakeEST(t, func(w http.ResponseWriter, _ *http.Request, _ seen) {
		ct, body := multipartBody(t, keyPart, certPart)
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(body)
	})
	got, err := f.client(t, Config{Username: "cam-2", Password: "ghb_x"}).ServerKeygen(context.Background(), testpki.CSR(t, testpki.Key(t, "P-384")))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("another key")
	}
	if s := f.last(t); s.path != "/.well-known/est/line/serverkeygen" || s.pass != "ghb_x" || s.contentType != "application/pkcs10" || s.csr == nil {
		t.Fatalf("serverkeygen request %+v", s)
	}
}

// FuzzParseServerKeygen: any body is a key with its certificate or
// bad_response; never a panic.
func FuzzParseServerKeygen(f *testing.F) {
	ca := newPKI(f, "CA")
	_, keyPart, certPart := keyAndCert(f, ca)
	ct, body := multipartBody(f, keyPart, certPart)
	boundary := strings.TrimPrefix(ct, "multipart/mixed; boundary=")
	f.Add(body)
	_, body2 := multipartBody(f, certPart)
	f.Add(body2)
	f.Add([]byte("--" + boundary + "\r\nContent-Type: application/pkcs8\r\n\r\nAAAA\r\n--" + boundary + "--\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseServerKeygen("multipart/mixed; boundary="+boundary, body)
		if err != nil {
			if fault.CodeOf(err) != BadResponse {
				t.Fatalf("code %s", fault.CodeOf(err))
			}
			return
		}
		if !got.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(got.Certificate.PublicKey) {
			t.Fatal("accepted a certificate for another key")
		}
	})
}

func TestParseCSRAttrs(t *testing.T) {
	gatehouse, _ := est.CSRAttrs([]string{"RSA", "P-256"})
	// RFC 7030 §4.5.2's example shape: bare OIDs and attributes mixed.
	challengePassword := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	mixed, err := asn1.Marshal([]asn1.RawValue{
		oidRaw(t, challengePassword),
		attrRaw(t, oidECPublicKey, oidRaw(t, oidP384)),
		oidRaw(t, oidEd25519),
		attrRaw(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}, oidRaw(t, asn1.ObjectIdentifier{1, 3, 6, 1, 1, 1, 1, 22})),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		der  []byte
		keys string
		ok   bool
	}{
		{"gatehouse", gatehouse, "P-256,RSA", true},
		{"mixed", mixed, "P-384,Ed25519", true},
		{"empty", []byte{0x30, 0}, "", true},
		{"trailing data", append(append([]byte(nil), gatehouse...), 0), "", false},
		{"not a SEQUENCE", []byte{0x31, 0}, "", false},
		{"an INTEGER element", []byte{0x30, 3, 2, 1, 1}, "", false},
		{"attribute without values", []byte{0x30, 0x0b, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x31, 0x00}, "", false},
		{"truncated", gatehouse[:len(gatehouse)-2], "", false},
		{"not DER", []byte("hello"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs, err := ParseCSRAttrs(tc.der)
			if !tc.ok {
				if fault.CodeOf(err) != fault.InvalidArgument {
					t.Fatalf("%v, want invalid_argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(KeyTypes(attrs), ","); got != tc.keys {
				t.Fatalf("key types %q, want %q", got, tc.keys)
			}
		})
	}
}

func oidRaw(t testing.TB, o asn1.ObjectIdentifier) asn1.RawValue {
	t.Helper()
	der, err := asn1.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: der}
}

func attrRaw(t testing.TB, o asn1.ObjectIdentifier, values ...asn1.RawValue) asn1.RawValue {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{o, values})
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: der}
}

// FuzzParseCSRAttrs: any input is attributes or invalid_argument.
func FuzzParseCSRAttrs(f *testing.F) {
	der, _ := est.CSRAttrs([]string{"RSA", "P-256", "P-384", "Ed25519"})
	f.Add(der)
	f.Add([]byte{0x30, 0})
	f.Fuzz(func(t *testing.T, der []byte) {
		attrs, err := ParseCSRAttrs(der)
		if err != nil && fault.CodeOf(err) != fault.InvalidArgument {
			t.Fatalf("code %s", fault.CodeOf(err))
		}
		_ = KeyTypes(attrs)
	})
}
