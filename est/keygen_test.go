package est

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

func TestServerKeyType(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		want    string
	}{
		{[]string{"P-256"}, "P-256"},
		{[]string{"RSA", "Ed25519", "P-256"}, "P-256"}, // P-256 whenever allowed
		{[]string{"P-384", "Ed25519"}, "P-384"},
		{[]string{"Ed25519", "RSA"}, "Ed25519"},
		{[]string{"RSA"}, "RSA"},
		{[]string{"DSA", "RSA"}, "RSA"}, // unknown names are passed over
		{nil, ""},
	} {
		if got := ServerKeyType(tc.allowed); got != tc.want {
			t.Errorf("ServerKeyType(%v) = %q, want %q", tc.allowed, got, tc.want)
		}
	}
}

// keygenAnswer is a serverkeygen answer read the way a client would, with
// mime/multipart: the key part first, then the certs-only part, both base64.
type keygenAnswer struct {
	key  crypto.PrivateKey
	cert *x509.Certificate
}

func readKeygenAnswer(t *testing.T, contentType string, body io.Reader) keygenAnswer {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || len(params["boundary"]) < 16 {
		t.Fatalf("content type %q (%v), want multipart/mixed with a random boundary", contentType, err)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var parts [][]byte
	for i, want := range []string{mediaPKCS8, mediaCertsOnly} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if ct := p.Header.Get("Content-Type"); ct != want || p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("part %d: %q %q, want %q base64", i, ct, p.Header.Get("Content-Transfer-Encoding"), want)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		der, err := DecodeBase64(b)
		if err != nil {
			t.Fatalf("part %d is not base64: %v", i, err)
		}
		parts = append(parts, der)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("a third part: %v", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(parts[0])
	if err != nil {
		t.Fatalf("key part is not PKCS#8: %v", err)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	var sd signedData
	if _, err := asn1.Unmarshal(parts[1], &ci); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil || len(sd.Certificates) != 1 {
		t.Fatalf("certs-only: %v, %d certificates", err, len(sd.Certificates))
	}
	cert, err := x509.ParseCertificate(sd.Certificates[0].FullBytes)
	if err != nil {
		t.Fatal(err)
	}
	return keygenAnswer{key, cert}
}

// TestServerKeygen: the answer is the key the profile wants, as PKCS#8,
// and a certificate for exactly that key, enrolled as a server key with
// the client's subject; the client's key is not the one certified.
func TestServerKeygen(t *testing.T) {
	r := newRig(t)
	clientKey := testpki.Key(t, "P-256")
	subject := pkix.Name{CommonName: "cam-9", SerialNumber: "cam-9"}
	body := base64.StdEncoding.EncodeToString(testpki.CSRSubject(t, clientKey, subject))
	for _, tc := range []struct {
		name, label, token string
		check              func(crypto.PrivateKey) bool
	}{
		{"P-256 first", "", tokKeygen, func(k crypto.PrivateKey) bool {
			e, ok := k.(*ecdsa.PrivateKey)
			return ok && e.Curve == elliptic.P256()
		}},
		{"under the label", "keygen", tokKeygen, func(k crypto.PrivateKey) bool { _, ok := k.(*ecdsa.PrivateKey); return ok }},
		{"RSA 2048 when only RSA", "rsa", tokRSA, func(k crypto.PrivateKey) bool {
			rk, ok := k.(*rsa.PrivateKey)
			return ok && rk.N.BitLen() == 2048
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.enr.enrolls)
			rec, err := r.do(call{method: "POST", op: "serverkeygen", label: tc.label, tls: true, user: "estuser", pass: tc.token,
				ct: "application/pkcs10", body: body})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			a := readKeygenAnswer(t, rec.Header().Get("Content-Type"), rec.Body)
			if !tc.check(a.key) {
				t.Fatalf("key %T is not the profile's", a.key)
			}
			pub := a.key.(crypto.Signer).Public()
			if !a.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("the certificate is not for the key")
			}
			if a.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(clientKey.Public()) {
				t.Fatal("the client's key was certified")
			}
			if len(r.enr.enrolls) != before+1 {
				t.Fatalf("%d enrollments", len(r.enr.enrolls)-before)
			}
			e := r.enr.enrolls[before]
			if !e.ServerKey || e.Token != tc.token || e.DeviceID != "" {
				t.Fatalf("enroll request %+v", e)
			}
			if a.cert.Subject.SerialNumber != "cam-9" || a.cert.Subject.CommonName != "cam-9" {
				t.Fatalf("the CSR enrolled has subject %s, want the client's", a.cert.Subject)
			}
		})
	}
	// Two answers, two boundaries: a boundary is never predictable.
	var boundaries []string
	for range 2 {
		rec, err := r.do(call{method: "POST", op: "serverkeygen", tls: true, pass: tokKeygen, ct: "application/pkcs10", body: body})
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(rec.Header().Get("Content-Type"))
		boundaries = append(boundaries, params["boundary"])
	}
	if boundaries[0] == boundaries[1] {
		t.Fatalf("boundary %q twice", boundaries[0])
	}
}

func TestServerKeygenBodyEd25519(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := selfSigned(t, "leaf")
	body, ct, err := ServerKeygenBody(key, leaf)
	if err != nil {
		t.Fatal(err)
	}
	a := readKeygenAnswer(t, ct, strings.NewReader(string(body)))
	if k, ok := a.key.(ed25519.PrivateKey); !ok || !k.Equal(key) || !a.cert.Equal(leaf) {
		t.Fatalf("read back %T and %s", a.key, a.cert.Subject)
	}
	// Every line of the body is CRLF-terminated MIME or base64 of at most
	// 64 characters: nothing an EST client's line reader chokes on.
	for _, l := range strings.Split(string(body), "\n") {
		if len(l) > 76 {
			t.Fatalf("line of %d characters", len(l))
		}
	}
}

// attrCSR is a DER CSR for a new P-256 key carrying an attribute of type oid.
func attrCSR(t testing.TB, oid asn1.ObjectIdentifier) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "c"},
		Attributes: []pkix.AttributeTypeAndValueSET{{Type: oid, // the value's shape does not matter here
			Value: [][]pkix.AttributeTypeAndValue{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "k"}}}}},
	}, testpki.Key(t, "P-256"))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestServerKeygenEncryptedDelivery: a client that asks for its key
// encrypted beyond TLS is told it is not offered (501), before any key is
// made or token touched; other attributes pass.
func TestServerKeygenEncryptedDelivery(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		oid  asn1.ObjectIdentifier
		want int
	}{
		{oidDecryptKeyID, http.StatusNotImplemented},
		{oidAsymmDecryptKeyID, http.StatusNotImplemented},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}, http.StatusOK}, // challengePassword
	} {
		before := len(r.enr.enrolls)
		rec, err := r.do(call{method: "POST", op: "serverkeygen", tls: true, pass: tokKeygen, ct: "application/pkcs10",
			body: base64.StdEncoding.EncodeToString(attrCSR(t, tc.oid))})
		switch {
		case tc.want == http.StatusOK && (err != nil || rec.Code != http.StatusOK):
			t.Errorf("attribute %v: %v %d", tc.oid, err, rec.Code)
		case tc.want != http.StatusOK && (fault.CodeOf(err) != NotImplemented || len(r.enr.enrolls) != before):
			t.Errorf("attribute %v: %v, want not_implemented before enrolling", tc.oid, err)
		}
	}
}

func TestAttributeTypes(t *testing.T) {
	csr := testpki.ParseCSR(t, attrCSR(t, oidDecryptKeyID))
	got, err := AttributeTypes(csr.RawTBSCertificateRequest)
	if err != nil || len(got) != 1 || !got[0].Equal(oidDecryptKeyID) {
		t.Fatalf("%v %v", got, err)
	}
	plain := testpki.ParseCSR(t, testpki.CSRSubject(t, testpki.Key(t, "P-256"), pkix.Name{CommonName: "c"}))
	if got, err := AttributeTypes(plain.RawTBSCertificateRequest); err != nil || len(got) != 0 {
		t.Fatalf("no attributes: %v %v", got, err)
	}
	// SANs travel as an extensionRequest attribute.
	sans := testpki.ParseCSR(t, newCSR(t))
	if got, err := AttributeTypes(sans.RawTBSCertificateRequest); err != nil || len(got) != 1 ||
		!got[0].Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}) {
		t.Fatalf("extensionRequest: %v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, {0x30, 0x03, 0x02, 0x01, 0x00}, append(append([]byte(nil), csr.RawTBSCertificateRequest...), 0)} {
		if _, err := AttributeTypes(bad); err == nil {
			t.Errorf("% x parsed", bad)
		}
	}
}

// FuzzAttributeTypes: any bytes are attribute types or an error, never a
// panic; a request info that parses keeps parsing the same.
func FuzzAttributeTypes(f *testing.F) {
	f.Add(testpki.ParseCSR(f, attrCSR(f, oidDecryptKeyID)).RawTBSCertificateRequest)
	f.Add(testpki.ParseCSR(f, newCSR(f)).RawTBSCertificateRequest)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := AttributeTypes(der)
		if err != nil {
			return
		}
		b, err := AttributeTypes(der)
		if err != nil || len(a) != len(b) {
			t.Fatal("not deterministic")
		}
	})
}

// TestServerKeyFollowsCSR: the client's CSR key names the type it wants
// (RFC 7030 §4.4.1.2); the server follows it when the profile allows it,
// else makes the profile's own choice.
func TestServerKeyFollowsCSR(t *testing.T) {
	for _, tc := range []struct {
		profile    []string
		csrKey     string
		wantPublic func(crypto.PublicKey) bool
	}{
		{[]string{"Ed25519", "P-384", "P-256"}, "P-384", func(p crypto.PublicKey) bool {
			e, ok := p.(*ecdsa.PublicKey)
			return ok && e.Curve == elliptic.P384()
		}},
		{[]string{"Ed25519", "P-384", "P-256"}, "Ed25519", func(p crypto.PublicKey) bool { _, ok := p.(ed25519.PublicKey); return ok }},
		{[]string{"P-384"}, "P-256", func(p crypto.PublicKey) bool {
			e, ok := p.(*ecdsa.PublicKey)
			return ok && e.Curve == elliptic.P384()
		}},
	} {
		csr, err := x509.ParseCertificateRequest(testpki.CSRSubject(t, testpki.Key(t, tc.csrKey), pkix.Name{CommonName: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		key, _, err := keyAndCSR(tc.profile, csr)
		if err != nil || !tc.wantPublic(key.Public()) {
			t.Errorf("profile %v, CSR key %s: %T %v", tc.profile, tc.csrKey, key, err)
		}
	}
}
