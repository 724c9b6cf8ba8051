package est

import (
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// newCSR returns a fresh P-256 PKCS#10 request, DER.
func newCSR(t testing.TB) []byte {
	t.Helper()
	return testpki.CSR(t, testpki.Key(t, "P-256"))
}

func TestParseCSR(t *testing.T) {
	der := newCSR(t)
	b64 := base64.StdEncoding.EncodeToString(der)
	wrapped := wrap(b64, 64, "\r\n")
	badSig := append([]byte(nil), der...)
	badSig[len(badSig)-5] ^= 0xff // inside the signature BIT STRING
	const ct = "application/pkcs10"
	for _, tc := range []struct {
		name, ct, cte, body string
		want                fault.Code // "" = accepted
	}{
		{"one line", ct, "base64", b64, ""},
		{"CRLF lines", ct, "base64", wrapped, ""},
		{"no transfer-encoding header", ct, "", b64 + "\n", ""},
		{"media type parameter", ct + "; charset=us-ascii", "BASE64", b64, ""},
		{"json", "application/json", "base64", b64, fault.InvalidArgument},
		{"no content type", "", "base64", b64, fault.InvalidArgument},
		{"pem content type", "application/x-pem-file", "", b64, fault.InvalidArgument},
		{"binary transfer encoding", ct, "binary", b64, fault.InvalidArgument},
		{"not base64", ct, "base64", "not*base64!", fault.InvalidArgument},
		{"no padding", ct, "base64", strings.TrimRight(b64, "="), ""},
		{"extra padding", ct, "base64", b64 + "=", fault.InvalidArgument},
		{"PEM instead of base64", ct, "base64", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), fault.InvalidArgument},
		{"empty", ct, "base64", "", fault.CSRInvalid},
		{"not PKCS#10", ct, "base64", base64.StdEncoding.EncodeToString([]byte("hello world")), fault.CSRInvalid},
		{"trailing data", ct, "base64", base64.StdEncoding.EncodeToString(append(append([]byte(nil), der...), 0)), fault.CSRInvalid},
		{"bad signature", ct, "base64", base64.StdEncoding.EncodeToString(badSig), fault.CSRInvalid},
		{"too large", ct, "base64", base64.StdEncoding.EncodeToString(make([]byte, 17<<10)), fault.CSRInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, pemOut, err := ParseCSR(tc.ct, tc.cte, []byte(tc.body))
			if tc.want != "" {
				if fault.CodeOf(err) != tc.want {
					t.Fatalf("err %v, want code %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(csr.Raw) != string(der) {
				t.Error("parsed another request")
			}
			block, _ := pem.Decode(pemOut)
			if block == nil || block.Type != "CERTIFICATE REQUEST" || string(block.Bytes) != string(der) {
				t.Errorf("PEM out does not hold the request:\n%s", pemOut)
			}
		})
	}
}

func wrap(s string, n int, eol string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + eol)
		s = s[n:]
	}
	return b.String() + s + eol
}

// FuzzParseCSR: any body is either a request whose signature verifies or
// a client error with a stable code; never a panic or an internal error.
func FuzzParseCSR(f *testing.F) {
	der := newCSR(f)
	f.Add(base64.StdEncoding.EncodeToString(der), "base64")
	f.Add(wrap(base64.StdEncoding.EncodeToString(der), 64, "\n"), "")
	f.Add("====", "base64")
	f.Add("MIIB", "binary")
	f.Fuzz(func(t *testing.T, body, cte string) {
		csr, pemOut, err := ParseCSR("application/pkcs10", cte, []byte(body))
		if err != nil {
			switch fault.CodeOf(err) {
			case fault.InvalidArgument, fault.CSRInvalid, fault.KeyTypeNotAllowed:
			default:
				t.Fatalf("code %s for %q", fault.CodeOf(err), body)
			}
			return
		}
		if csr.CheckSignature() != nil || len(pemOut) == 0 {
			t.Fatal("accepted a request whose signature does not verify")
		}
	})
}
