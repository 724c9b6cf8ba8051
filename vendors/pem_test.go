package vendors

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func testCertPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Vendor Root"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestPEMLines: every fault of a pasted PEM bundle is named by its line.
func TestPEMLines(t *testing.T) {
	cert := testCertPEM(t)
	n := strings.Count(cert, "\n") // lines of one certificate
	bad := "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
	for _, c := range []struct {
		name, text string
		line       int // 0: no error
	}{
		{"one", cert, 0},
		{"two with blank lines", "\n\n" + cert + "\n" + cert + "\n", 0},
		{"junk first", "hello\n" + cert, 1},
		{"junk after blank lines", "\n\n  hello\n" + cert, 3},
		{"junk between", cert + "\nsubject=CN = x\n" + cert, n + 2},
		{"junk last", cert + cert + "bye", 2*n + 1},
		{"a key block", cert + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", n + 1},
		{"bad base64 before a good one", bad + cert, 1},
		{"bad base64 after a good one", cert + "\n" + bad + cert, n + 2},
		{"no END line", cert + "-----BEGIN CERTIFICATE-----\nAAAA\n", n + 1},
		{"not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := pemLines("anchors_pem", []byte(c.text))
			if c.line == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if fault.CodeOf(err) != fault.InvalidArgument || !strings.Contains(err.Error(), "anchors_pem: line "+strconv.Itoa(c.line)+":") {
				t.Fatalf("err = %v, want invalid_argument at line %d", err, c.line)
			}
		})
	}
}

var lineOf = regexp.MustCompile(`line (\d+):`)

// FuzzPEMLines: never a panic; a pass means every block is a certificate
// that parses; a refusal names a line the text has.
func FuzzPEMLines(f *testing.F) {
	cert := testCertPEM(f)
	for _, s := range []string{cert, "x\n" + cert, cert + cert, "-----BEGIN CERTIFICATE-----\n", "-----BEGIN X-----\nAA==\n-----END X-----\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		err := pemLines("f", []byte(text))
		if err == nil {
			for rest := []byte(text); ; {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					break
				}
				if _, perr := x509.ParseCertificate(b.Bytes); b.Type != "CERTIFICATE" || perr != nil {
					t.Fatalf("accepted a %s block that does not parse", b.Type)
				}
			}
			return
		}
		m := lineOf.FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("error names no line: %v", err)
		}
		if l, _ := strconv.Atoi(m[1]); l < 1 || l > strings.Count(text, "\n")+1 {
			t.Fatalf("line %d of a %d-line text: %v", l, strings.Count(text, "\n")+1, err)
		}
	})
}
