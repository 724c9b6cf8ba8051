package est

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// The golden messages were made once with openssl 3.0, by a writer that is
// not ours, and are checked in:
//
//	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=Golden Root" ... -out root.pem
//	openssl x509 -req -in int.csr -CA root.pem ... -out int.pem   (CN=Golden Issuing, CA, pathlen 0)
//	openssl crl2pkcs7 -nocrl -certfile int.pem -certfile root.pem -outform DER -out certsonly-chain.p7
//	openssl crl2pkcs7 -nocrl -certfile root.pem -outform DER -out certsonly-one.p7
//	openssl cms -sign -in msg -signer root.pem -inkey root.key -outform DER -nodetach -out signeddata-signed.p7
//
// certsonly-*.pem hold the certificates each certs-only message carries, in order.

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goldenCerts(t testing.TB, name string) []*x509.Certificate {
	t.Helper()
	data := readGolden(t, name)
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestParseCertsOnlyGolden(t *testing.T) {
	for _, name := range []string{"certsonly-chain", "certsonly-one"} {
		t.Run(name, func(t *testing.T) {
			der := readGolden(t, name+".p7")
			want := goldenCerts(t, name+".pem")
			got, err := ParseCertsOnly(der)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d certificates, want %d", len(got), len(want))
			}
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Errorf("certificate %d is %s, want %s", i, got[i].Subject, want[i].Subject)
				}
			}
			// Round trip: openssl's message is byte for byte what CertsOnly
			// writes for the same certificates.
			again, err := CertsOnly(got)
			if err != nil || !bytes.Equal(again, der) {
				t.Fatalf("CertsOnly(ParseCertsOnly(openssl)) differs: %v", err)
			}
		})
	}
}

func TestCertsOnlyRoundTrip(t *testing.T) {
	certs := []*x509.Certificate{selfSigned(t, "a"), selfSigned(t, "b"), selfSigned(t, "c")}
	der, err := CertsOnly(certs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d certificates", len(got))
	}
	for i := range got {
		if !got[i].Equal(certs[i]) {
			t.Errorf("certificate %d differs", i)
		}
	}
}

// signedDataWith builds a ContentInfo around a SignedData whose fields are
// the given raw DER elements, for the shapes CertsOnly never writes.
func signedDataWith(t *testing.T, version int64, fields ...[]byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(version)
				for _, f := range fields {
					b.AddBytes(f)
				}
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// asn1Elem encodes one element with tag around body.
func asn1Elem(tag cbasn1.Tag, body ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, x := range body {
			b.AddBytes(x)
		}
	})
	return b.BytesOrPanic()
}

func oidDER(t *testing.T, o []int) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(o)
	return b.BytesOrPanic()
}

func TestParseCertsOnlyRefuses(t *testing.T) {
	good := readGolden(t, "certsonly-chain.p7")
	cert := selfSigned(t, "x")
	emptySet := asn1Elem(cbasn1.SET)
	dataInfo := asn1Elem(cbasn1.SEQUENCE, oidDER(t, oidData))
	certsField := asn1Elem(cbasn1.Tag(0).ContextSpecific().Constructed(), cert.Raw)
	withTrailer := append(append([]byte(nil), good...), 0)
	wrongOuter := append([]byte(nil), good...)
	copy(wrongOuter[4:15], oidDER(t, oidData)) // same length OID: pkcs7-data
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"not ASN.1", []byte("hello, world")},
		{"signed message (openssl cms -sign)", readGolden(t, "signeddata-signed.p7")},
		{"truncated", good[:len(good)-10]},
		{"one byte short", good[:len(good)-1]},
		{"header only", good[:4]},
		{"trailing byte", withTrailer},
		{"content type is data", wrongOuter},
		{"a certificate, not PKCS#7", cert.Raw},
		{"version 3", signedDataWith(t, 3, emptySet, dataInfo, certsField, emptySet)},
		{"no certificates field", signedDataWith(t, 1, emptySet, dataInfo, emptySet)},
		{"empty certificates", signedDataWith(t, 1, emptySet, dataInfo, asn1Elem(cbasn1.Tag(0).ContextSpecific().Constructed()), emptySet)},
		{"crls present", signedDataWith(t, 1, emptySet, dataInfo, certsField,
			asn1Elem(cbasn1.Tag(1).ContextSpecific().Constructed()), emptySet)},
		{"encapsulated content", signedDataWith(t, 1, emptySet,
			asn1Elem(cbasn1.SEQUENCE, oidDER(t, oidData), asn1Elem(cbasn1.Tag(0).ContextSpecific().Constructed(), asn1Elem(cbasn1.OCTET_STRING))),
			certsField, emptySet)},
		{"other encapsulated type", signedDataWith(t, 1, emptySet, asn1Elem(cbasn1.SEQUENCE, oidDER(t, oidSignedData)), certsField, emptySet)},
		{"a digest algorithm", signedDataWith(t, 1, asn1Elem(cbasn1.SET, asn1Elem(cbasn1.SEQUENCE, oidDER(t, oidP256))), dataInfo, certsField, emptySet)},
		{"a signer", signedDataWith(t, 1, emptySet, dataInfo, certsField, asn1Elem(cbasn1.SET, asn1Elem(cbasn1.SEQUENCE)))},
		{"no signerInfos", signedDataWith(t, 1, emptySet, dataInfo, certsField)},
		{"field after signerInfos", signedDataWith(t, 1, emptySet, dataInfo, certsField, emptySet, emptySet)},
		{"attribute certificate choice", signedDataWith(t, 1, emptySet, dataInfo,
			asn1Elem(cbasn1.Tag(0).ContextSpecific().Constructed(), asn1Elem(cbasn1.Tag(2).ContextSpecific().Constructed(), cert.Raw[4:])), emptySet)},
		{"certificate that does not parse", signedDataWith(t, 1, emptySet, dataInfo,
			asn1Elem(cbasn1.Tag(0).ContextSpecific().Constructed(), asn1Elem(cbasn1.SEQUENCE, []byte{2, 1, 1})), emptySet)},
		{"too large", make([]byte, MaxCertsOnlyBytes+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := ParseCertsOnly(tc.der)
			if fault.CodeOf(err) != fault.InvalidArgument || certs != nil {
				t.Fatalf("got %d certificates, err %v; want invalid_argument", len(certs), err)
			}
		})
	}
}

func TestParseCertsOnlyBound(t *testing.T) {
	c := selfSigned(t, "many")
	certs := make([]*x509.Certificate, MaxCertsOnlyCerts)
	for i := range certs {
		certs[i] = c
	}
	der, err := CertsOnly(certs)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseCertsOnly(der); err != nil || len(got) != MaxCertsOnlyCerts {
		t.Fatalf("%d certificates: %d, %v", MaxCertsOnlyCerts, len(got), err)
	}
	der, err = CertsOnly(append(certs, c))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCertsOnly(der); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("%d certificates: %v, want invalid_argument", MaxCertsOnlyCerts+1, err)
	}
}

// FuzzParseCertsOnly: any input is refused with invalid_argument, or
// accepted as at least one certificate and exactly the message CertsOnly
// writes for them (only the one DER shape is taken); never a panic.
func FuzzParseCertsOnly(f *testing.F) {
	for _, name := range []string{"certsonly-chain.p7", "certsonly-one.p7", "signeddata-signed.p7"} {
		f.Add(readGolden(f, name))
	}
	f.Add([]byte{0x30, 0x80, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		certs, err := ParseCertsOnly(der)
		if err != nil {
			if fault.CodeOf(err) != fault.InvalidArgument || certs != nil {
				t.Fatalf("code %s with %d certificates", fault.CodeOf(err), len(certs))
			}
			return
		}
		if len(certs) == 0 || len(certs) > MaxCertsOnlyCerts {
			t.Fatalf("accepted %d certificates", len(certs))
		}
		again, err := CertsOnly(certs)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("accepted a message CertsOnly does not write: %x", der)
		}
	})
}
