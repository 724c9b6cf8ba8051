package est

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return selfSignedKey(t, cn, key)
}

// selfSignedKey is selfSigned with key.
func selfSignedKey(t *testing.T, cn string, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signedData is the shape of a certs-only message, read back with
// encoding/asn1 rather than the builder that wrote it.
type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      struct{ ContentType asn1.ObjectIdentifier }
	Certificates     []asn1.RawValue `asn1:"tag:0,set"`
	SignerInfos      asn1.RawValue
}

func TestCertsOnly(t *testing.T) {
	certs := []*x509.Certificate{selfSigned(t, "one"), selfSigned(t, "two")}
	der, err := CertsOnly(certs)
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) != 0 || !ci.ContentType.Equal(oidSignedData) {
		t.Fatalf("ContentInfo: %v rest %d type %v", err, len(rest), ci.ContentType)
	}
	var sd signedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	if sd.Version != 1 || !sd.ContentInfo.ContentType.Equal(oidData) || len(sd.Certificates) != 2 ||
		len(sd.DigestAlgorithms.Bytes) != 0 || len(sd.SignerInfos.Bytes) != 0 {
		t.Fatalf("SignedData: %+v", sd)
	}
	for i, c := range sd.Certificates {
		if !bytes.Equal(c.FullBytes, certs[i].Raw) {
			t.Errorf("certificate %d differs", i)
		}
	}
	if _, err := CertsOnly(nil); err == nil {
		t.Error("CertsOnly(nil) succeeded")
	}
	// And a reader nobody here wrote.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	p7 := filepath.Join(t.TempDir(), "certs.p7")
	if err := os.WriteFile(p7, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "pkcs7", "-inform", "DER", "-in", p7, "-print_certs").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "subject=CN = one") || !strings.Contains(string(out), "subject=CN = two") {
		t.Fatalf("openssl pkcs7: %v\n%s", err, out)
	}
}

func TestCSRAttrs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keyTypes []string
	}{
		{"all", []string{"P-256", "RSA", "P-384", "Ed25519"}},
		{"p256", []string{"P-256"}},
		{"rsa-ed25519", []string{"RSA", "Ed25519"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := CSRAttrs(tc.keyTypes)
			if err != nil {
				t.Fatal(err)
			}
			got := encodeBase64(der)
			golden := filepath.Join("testdata", "csrattrs-"+tc.name+".b64")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%swant\n%s", got, want)
			}
			// Every element is an OID or an Attribute{OID, SET}.
			var attrs []asn1.RawValue
			if rest, err := asn1.Unmarshal(der, &attrs); err != nil || len(rest) != 0 || len(attrs) == 0 {
				t.Fatalf("CsrAttrs: %v %d", err, len(attrs))
			}
		})
	}
	if der, err := CSRAttrs(nil); der != nil || err != nil {
		t.Errorf("no key types: %x %v, want nothing", der, err)
	}
}

func TestEncodeBase64Lines(t *testing.T) {
	der := bytes.Repeat([]byte{0xab}, 200)
	out := encodeBase64(der)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for i, l := range lines {
		if len(l) > 64 || (i < len(lines)-1 && len(l) != 64) {
			t.Fatalf("line %d has %d characters", i, len(l))
		}
	}
	back, err := base64.StdEncoding.DecodeString(strings.Join(lines, ""))
	if err != nil || !bytes.Equal(back, der) {
		t.Fatalf("round trip: %v", err)
	}
}
