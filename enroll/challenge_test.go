package enroll_test

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// TestChallengeCSR: the CSR gatehouse renew builds carries the challenge,
// verifies, and names the key, for every key type a profile may allow; a
// plain CSR carries none.
func TestChallengeCSR(t *testing.T) {
	for _, kt := range []string{"P-256", "P-384", "Ed25519", "RSA-2048"} {
		t.Run(kt, func(t *testing.T) {
			key := testpki.Key(t, kt)
			nonce := secret.New(enroll.ChallengePrefix)
			der, err := enroll.NewChallengeCSR(key, nonce)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := enroll.ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := enroll.ChallengeOf(csr)
			if err != nil || !ok || got != nonce {
				t.Fatalf("ChallengeOf = %q %v %v, want %q", got, ok, err, nonce)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Fatal("CSR names another key")
			}
			plain := testpki.ParseCSR(t, testpki.CSR(t, key))
			if _, ok, err := enroll.ChallengeOf(plain); ok || err != nil {
				t.Fatalf("plain CSR: challenge %v, %v", ok, err)
			}
		})
	}
	if _, err := enroll.NewChallengeCSR(testpki.Key(t, "P-256"), ""); err == nil {
		t.Fatal("empty challenge accepted")
	}
}

// TestChallengeFromOpenSSL: a device without gatehouse can answer a
// challenge with openssl (challengePassword in [req_attributes]).
func TestChallengeFromOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	dir := t.TempDir()
	keyFile, cnf := filepath.Join(dir, "k.pem"), filepath.Join(dir, "req.cnf")
	if err := os.WriteFile(keyFile, testpki.KeyPEM(t, testpki.Key(t, "P-256")), 0o600); err != nil {
		t.Fatal(err)
	}
	nonce := secret.New(enroll.ChallengePrefix)
	conf := "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n[dn]\nCN = ignored\n[attrs]\nchallengePassword = " + nonce + "\n"
	if err := os.WriteFile(cnf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "req", "-new", "-key", keyFile, "-config", cnf).Output()
	if err != nil {
		t.Fatalf("openssl req: %v", err)
	}
	csr, err := enroll.ParseCSR(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := enroll.ChallengeOf(csr); err != nil || !ok || got != nonce {
		t.Fatalf("ChallengeOf(openssl CSR) = %q %v %v, want %q", got, ok, err, nonce)
	}
}

// TestChallengeOfRefuses: malformed or ambiguous challenge attributes are
// csr_invalid.
func TestChallengeOfRefuses(t *testing.T) {
	good := testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))).RawTBSCertificateRequest
	// attr is a challengePassword attribute with the given encoded values.
	attr := func(values ...[]byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7})
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, v := range values {
					b.AddBytes(v)
				}
			})
		})
		return b.BytesOrPanic()
	}
	// tbs is good's request info with attrs as its attributes, under tag.
	tbsTagged := func(tag cbasn1.Tag, attrs ...[]byte) []byte {
		in := cryptobyte.String(good)
		var seq, version, subject, spki cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&version, cbasn1.INTEGER) ||
			!seq.ReadASN1Element(&subject, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
			t.Fatal("cannot read a Go CSR")
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(version)
			b.AddBytes(subject)
			b.AddBytes(spki)
			b.AddASN1(tag, func(b *cryptobyte.Builder) {
				for _, a := range attrs {
					b.AddBytes(a)
				}
			})
		})
		return b.BytesOrPanic()
	}
	attrsTag := cbasn1.Tag(0).ContextSpecific().Constructed()
	tbs := func(attrs ...[]byte) []byte { return tbsTagged(attrsTag, attrs...) }
	utf8v := func(s string) []byte { return append([]byte{0x0c, byte(len(s))}, s...) }
	ok := tbs(attr(utf8v("ghc_x")))
	if got, found, err := enroll.ChallengeOf(&x509.CertificateRequest{RawTBSCertificateRequest: ok}); err != nil || !found || got != "ghc_x" {
		t.Fatalf("well-formed attribute: %q %v %v", got, found, err)
	}
	cases := map[string][]byte{
		"two attributes":            tbs(attr(utf8v("a")), attr(utf8v("b"))),
		"two values":                tbs(attr(utf8v("a"), utf8v("b"))),
		"no value":                  tbs(attr()),
		"empty value":               tbs(attr(utf8v(""))),
		"integer value":             tbs(attr([]byte{0x02, 0x01, 0x05})),
		"BMPString value":           tbs(attr([]byte{0x1e, 0x02, 0x00, 0x41})),
		"invalid UTF-8":             tbs(attr([]byte{0x0c, 0x02, 0xc3, 0x28})),
		"trailing data":             append(append([]byte{}, ok...), 0x00),
		"truncated":                 ok[:len(ok)-3],
		"not a sequence":            {0x04, 0x00},
		"empty":                     {},
		"attributes not [0]":        tbsTagged(cbasn1.Tag(1).ContextSpecific().Constructed(), attr(utf8v("a"))),
		"other attribute malformed": tbs([]byte{0x30, 0x03, 0x06, 0x01, 0x00}),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			_, found, err := enroll.ChallengeOf(&x509.CertificateRequest{RawTBSCertificateRequest: raw})
			if !fault.Is(err, fault.CSRInvalid) || found {
				t.Fatalf("found %v, err %v, want csr_invalid", found, err)
			}
		})
	}
}

// FuzzChallengeOf: any request info parses to a challenge, no challenge,
// or csr_invalid, never a panic; a challenge found is 1–255 bytes of UTF-8.
func FuzzChallengeOf(f *testing.F) {
	key := testpki.Key(f, "P-256")
	f.Add(testpki.ParseCSR(f, testpki.CSR(f, key)).RawTBSCertificateRequest)
	der, err := enroll.NewChallengeCSR(key, secret.New(enroll.ChallengePrefix))
	if err != nil {
		f.Fatal(err)
	}
	withChallenge := testpki.ParseCSR(f, der).RawTBSCertificateRequest
	f.Add(withChallenge)
	f.Add(withChallenge[:len(withChallenge)/2])
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, found, err := enroll.ChallengeOf(&x509.CertificateRequest{RawTBSCertificateRequest: raw})
		if err != nil {
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Code != fault.CSRInvalid || found || got != "" {
				t.Fatalf("error %v (found %v %q), want csr_invalid alone", err, found, got)
			}
			return
		}
		if found != (got != "") || len(got) > 255 || !utf8.ValidString(got) || !strings.Contains(string(raw), got) {
			t.Fatalf("challenge %q (found %v)", got, found)
		}
	})
}
