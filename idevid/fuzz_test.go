package idevid_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// FuzzParseAllowList: no input panics; every result is InvalidArgument or
// distinct normalised serials within max.
func FuzzParseAllowList(f *testing.F) {
	for _, s := range []string{
		"serial\nab\n", "# c\n\nAB:CD,x\n", "\"a\nb\",c\n", "\xef\xbb\xbfserial,x\n0x1\n", "a\na\n", ",\n", "\"\n",
	} {
		f.Add(s, 3)
	}
	if golden, err := os.ReadFile("testdata/allowlist.csv"); err == nil {
		f.Add(string(golden), 100)
	}
	f.Fuzz(func(t *testing.T, in string, max int) {
		max %= 100
		got, err := idevid.ParseAllowList(strings.NewReader(in), max)
		if err != nil {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("code %s: %v", fault.CodeOf(err), err)
			}
			return
		}
		if max > 0 && len(got) > max {
			t.Fatalf("%d entries over max %d", len(got), max)
		}
		seen := map[string]bool{}
		for _, e := range got {
			if n, err := idevid.NormalizeSerial(e.Serial); err != nil || n != e.Serial || seen[n] {
				t.Fatalf("entry %q not normalised or repeated (%v)", e.Serial, err)
			}
			seen[e.Serial] = true
		}
	})
}

// FuzzNormalizeSerial: no input panics; a result is canonical (normalising
// it again is the identity) and short.
func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"0x00AB", "aa:bb", "0", ":", "0x", "ff:", strings.Repeat("0", 70) + "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := idevid.NormalizeSerial(in)
		if err != nil {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("code %s", fault.CodeOf(err))
			}
			return
		}
		if again, err := idevid.NormalizeSerial(got); err != nil || again != got || len(got) > 64 || got == "" {
			t.Fatalf("%q -> %q -> %q, %v", in, got, again, err)
		}
		if len(got) > 1 && got[0] == '0' {
			t.Fatalf("%q has a leading zero", got)
		}
	})
}

// FuzzDeriveID feeds arbitrary subjectAltName bytes (the hardwareModuleName
// parser) and subject values to DeriveID: it never panics, and whatever it
// returns is a valid device id or Invalid.
func FuzzDeriveID(f *testing.F) {
	f.Add(uint8(4), idevidtest.SAN(f, []string{"a.example"}, []string{"urn:x:y"}, &idevidtest.HWModule{Serial: []byte{0, 1, 2}}), "SN-1", "p-")
	f.Add(uint8(4), idevidtest.SAN(f, nil, nil, &idevidtest.HWModule{Serial: []byte("HW..1")}), "", "")
	f.Add(uint8(4), []byte{0x30, 0x03, 0xa0, 0x01, 0x00}, "x", "")
	f.Add(uint8(0), []byte{}, "a/b", "")
	f.Add(uint8(1), []byte{0x30, 0x00}, "..", "")
	f.Fuzz(func(t *testing.T, which uint8, san []byte, value, prefix string) {
		froms := []idevid.IDFrom{idevid.FromSerialNumber, idevid.FromCN, idevid.FromSANDNS, idevid.FromSANURI, idevid.FromHardwareModule, "bogus"}
		cert := &x509.Certificate{
			Subject: pkix.Name{
				CommonName: value, SerialNumber: value,
				Names: []pkix.AttributeTypeAndValue{
					{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: value},
					{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: value},
				},
			},
			DNSNames:   []string{value},
			Extensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}},
		}
		id, err := idevid.DeriveID(cert, froms[int(which)%len(froms)], prefix)
		if err != nil {
			if !fault.Is(err, idevid.Invalid) {
				t.Fatalf("code %s: %v", fault.CodeOf(err), err)
			}
			return
		}
		if !deviceid.Valid(id) || !strings.HasPrefix(id, prefix) {
			t.Fatalf("DeriveID gave %q", id)
		}
	})
}

// BenchmarkCheck is one enrollment's IDevID verification: x509 Verify of a
// leaf + intermediate + root chain, the signature walk, two CRLs, the id.
// Enrollment is not a hot path; the number says what a factory burst costs:
// about 2.3 ms/op, 8.3 kB and 147 allocs on the shared 2-core test machine
// (six ECDSA P-256 signature checks: the vendor walk, Verify, two CRLs).
func BenchmarkCheck(b *testing.B) {
	now := time.Now()
	acme := idevidtest.NewVendor(b, "acme")
	_, _, chain := acme.Device(b, idevidtest.DeviceOptions{SerialNumber: "SN-1"})
	v := acme.Vendor("plant", "sensor", idevid.FromSerialNumber)
	v.CRLs = []*x509.RevocationList{
		idevidtest.ParseCRL(b, acme.RootCRL(b, nil, now, now.Add(time.Hour))),
		idevidtest.ParseCRL(b, acme.LeafCRL(b, nil, now, now.Add(time.Hour))),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Check(chain, now); err != nil {
			b.Fatal(err)
		}
	}
}
