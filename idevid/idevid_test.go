package idevid_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

func crls(t *testing.T, ders ...[]byte) []*x509.RevocationList {
	var out []*x509.RevocationList
	for _, d := range ders {
		out = append(out, idevidtest.ParseCRL(t, d))
	}
	return out
}

func TestCheck(t *testing.T) {
	now := time.Now()
	acme := idevidtest.NewVendor(t, "acme")
	other := idevidtest.NewVendor(t, "other")
	expiredCA := acme.NewIntermediate(t, "acme old CA", acme.IntermediateKey, now.AddDate(-5, 0, 0), now.AddDate(0, 0, -1))

	good, _, goodChain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-0042", Serial: big.NewInt(0x1234)})
	revokedLeaf, _, revokedChain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-0043"})
	_, _, expired := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-1", NotBefore: now.AddDate(-3, 0, 0), NotAfter: now.AddDate(0, 0, -10)})
	_, _, future := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-2", NotBefore: now.Add(48 * time.Hour)})
	_, _, stranger := other.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-3"})
	_, _, underExpiredCA := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-4", Issuer: expiredCA, IssuerKey: acme.IntermediateKey})
	_, _, noSerial := acme.Device(t, idevidtest.DeviceOptions{CN: "x"})
	_, _, byRoot := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-5", Issuer: acme.Root, IssuerKey: acme.RootKey})

	base := acme.Vendor("plant", "sensor", idevid.FromSerialNumber)
	withCRLs := func(ders ...[]byte) idevid.Vendor {
		v := base
		v.CRLs = crls(t, ders...)
		return v
	}
	intermediateOnly := base
	intermediateOnly.Anchors = []*x509.Certificate{acme.Intermediate}
	intermediateOnly.Intermediates = nil
	noSentIntermediate := []*x509.Certificate{good} // the vendor's registered intermediate completes it

	fresh, stale := now.Add(24*time.Hour), now.Add(-time.Hour)
	_, _, hwOnly := acme.Device(t, idevidtest.DeviceOptions{EmptySubject: true, CriticalSAN: true, HWModule: &idevidtest.HWModule{Serial: []byte{0xca, 0xfe}}})
	_, _, otherCritical := acme.Device(t, idevidtest.DeviceOptions{EmptySubject: true, CriticalSAN: true,
		RawSAN: []byte{0x30, 0x07, 0xa4, 0x05, 0x30, 0x03, 0x31, 0x01, 0x00}}) // a directoryName only: not ours to wave through
	hwVendor := acme.Vendor("plant", "sensor", idevid.FromHardwareModule)
	cases := []struct {
		name     string
		v        idevid.Vendor
		chain    []*x509.Certificate
		code     fault.Code
		msg      string // in the message
		deviceID string
	}{
		{name: "valid", v: base, chain: goodChain, deviceID: "SN-0042"},
		{name: "valid, intermediate from the registration", v: base, chain: noSentIntermediate, deviceID: "SN-0042"},
		{name: "valid, issued by the root", v: base, chain: byRoot, deviceID: "SN-5"},
		{name: "anchor is the intermediate only", v: intermediateOnly, chain: goodChain, deviceID: "SN-0042"},
		{name: "anchor is the intermediate only, root CRL not applied to the anchor", v: func() idevid.Vendor {
			v := intermediateOnly
			v.CRLs = crls(t, acme.RevokeIntermediateCRL(t, now, fresh))
			return v
		}(), chain: goodChain, deviceID: "SN-0042"},
		{name: "empty subject, critical SAN with a hardwareModuleName only", v: hwVendor, chain: hwOnly, deviceID: "cafe"},
		{name: "empty subject, critical SAN x509 does not handle, not a hardwareModuleName", v: hwVendor, chain: otherCritical, code: idevid.Invalid, msg: "does not verify"},
		{name: "prefix", v: func() idevid.Vendor { v := base; v.IDPrefix = "acme-"; return v }(), chain: goodChain, deviceID: "acme-SN-0042"},
		{name: "unregistered vendor", v: base, chain: stranger, code: idevid.UnknownVendor, msg: "other IDevID CA"},
		{name: "unregistered vendor with a pile of look-alike intermediates", v: base, chain: func() []*x509.Certificate {
			ch := append([]*x509.Certificate{}, stranger...)
			for range 80 {
				ch = append(ch, other.NewIntermediate(t, "other IDevID CA", other.IntermediateKey, now.Add(-time.Hour), fresh))
			}
			return ch
		}(), code: idevid.UnknownVendor},
		{name: "an impostor PKI with the vendor's names", v: base, chain: func() []*x509.Certificate {
			_, _, ch := idevidtest.NewVendor(t, "acme").Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-6"})
			if !bytes.Equal(ch[1].RawSubject, acme.Intermediate.RawSubject) {
				t.Fatal("impostor names differ")
			}
			return ch
		}(), code: idevid.UnknownVendor},
		{name: "an impostor leaf alone with the vendor's issuer name", v: base, chain: func() []*x509.Certificate {
			_, _, ch := idevidtest.NewVendor(t, "acme").Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-6"})
			return ch[:1]
		}(), code: idevid.UnknownVendor},
		{name: "no certificate", v: base, chain: nil, code: idevid.Invalid},
		{name: "expired IDevID", v: base, chain: expired, code: idevid.Invalid, msg: "the IDevID (serial"},
		{name: "expired IDevID says expired", v: base, chain: expired, code: idevid.Invalid, msg: "expired at"},
		{name: "not yet valid IDevID", v: base, chain: future, code: idevid.Invalid, msg: "not yet valid"},
		{name: "expired intermediate", v: base, chain: underExpiredCA, code: idevid.Invalid, msg: `vendor intermediate "CN=acme old CA`},
		{name: "no device id", v: base, chain: noSerial, code: idevid.Invalid, msg: "no subject serialNumber"},
		{name: "revoked intermediate via root CRL", v: withCRLs(acme.RevokeIntermediateCRL(t, now, fresh)), chain: goodChain, code: idevid.Revoked, msg: `vendor intermediate "CN=acme IDevID CA`},
		{name: "revoked intermediate, not sent by the device", v: withCRLs(acme.RevokeIntermediateCRL(t, now, fresh)), chain: noSentIntermediate, code: idevid.Revoked},
		{name: "revoked leaf via intermediate CRL", v: withCRLs(acme.LeafCRL(t, []*big.Int{revokedLeaf.SerialNumber}, now, fresh)), chain: revokedChain, code: idevid.Revoked, msg: "the IDevID (serial " + revokedLeaf.SerialNumber.Text(16)},
		{name: "leaf CRL lists another device", v: withCRLs(acme.LeafCRL(t, []*big.Int{revokedLeaf.SerialNumber}, now, fresh)), chain: goodChain, deviceID: "SN-0042"},
		{name: "stale leaf CRL", v: withCRLs(acme.LeafCRL(t, nil, now.Add(-48*time.Hour), stale)), chain: goodChain, code: idevid.CRLStale, msg: "nextUpdate"},
		{name: "stale root CRL", v: withCRLs(acme.RootCRL(t, nil, now.Add(-48*time.Hour), stale)), chain: goodChain, code: idevid.CRLStale},
		{name: "stale CRL still revokes", v: withCRLs(acme.LeafCRL(t, []*big.Int{revokedLeaf.SerialNumber}, now.Add(-48*time.Hour), stale)), chain: revokedChain, code: idevid.Revoked},
		{name: "stale and fresh CRL of one issuer: the fresh one counts", v: withCRLs(acme.LeafCRL(t, nil, now.Add(-48*time.Hour), stale), acme.LeafCRL(t, nil, now, fresh)), chain: goodChain, deviceID: "SN-0042"},
		{name: "a CRL without nextUpdate is stale (fail closed)", v: func() idevid.Vendor {
			v := withCRLs(acme.LeafCRL(t, nil, now, fresh))
			v.CRLs[0].NextUpdate = time.Time{}
			return v
		}(), chain: goodChain, code: idevid.CRLStale},
		{name: "fresh CRLs at both levels", v: withCRLs(acme.RootCRL(t, nil, now, fresh), acme.LeafCRL(t, nil, now, fresh)), chain: goodChain, deviceID: "SN-0042"},
		{name: "a stranger's CRL with the intermediate's name is ignored", v: func() idevid.Vendor {
			impostor := idevidtest.NewVendor(t, "acme")
			v := base
			// Same issuer name as the acme intermediate but another key: it
			// must not count as covering (neither revoke nor go stale).
			v.CRLs = crls(t, impostor.LeafCRL(t, []*big.Int{good.SerialNumber}, now.Add(-48*time.Hour), stale))
			if !bytes.Equal(v.CRLs[0].RawIssuer, acme.Intermediate.RawSubject) {
				t.Fatal("impostor names differ")
			}
			return v
		}(), chain: goodChain, deviceID: "SN-0042"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := c.v.Check(c.chain, now)
			if c.code != "" {
				if fault.CodeOf(err) != c.code {
					t.Fatalf("got %v (%+v), want code %s", err, id, c.code)
				}
				if !strings.Contains(fault.MessageOf(err), c.msg) {
					t.Fatalf("message %q does not say %q", fault.MessageOf(err), c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.DeviceID != c.deviceID || id.Vendor != "acme" {
				t.Fatalf("identity %+v, want device %q of acme", id, c.deviceID)
			}
		})
	}

	// The identity of the good device, field by field.
	id, err := base.Check(goodChain, now)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(acme.Intermediate.RawSubjectPublicKeyInfo)
	sum := sha256.Sum256(append(append(spki[:], good.RawIssuer...), 0x12, 0x34))
	fp := sha256.Sum256(good.Raw)
	want := idevid.Identity{
		Vendor: "acme", DeviceID: "SN-0042", Issuer: "CN=acme IDevID CA,O=acme", Serial: "1234",
		Key: hex.EncodeToString(sum[:]), Fingerprint: hex.EncodeToString(fp[:]), NotAfter: good.NotAfter,
	}
	if id != want {
		t.Fatalf("identity\n got %+v\nwant %+v", id, want)
	}
}

func TestMatch(t *testing.T) {
	now := time.Now()
	acme := idevidtest.NewVendor(t, "acme")
	other := idevidtest.NewVendor(t, "other")
	_, _, chain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-7", CN: "cn-7"})
	_, _, expired := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-8", NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(0, 0, -1)})
	_, _, stranger := idevidtest.NewVendor(t, "nobody").Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-9"})

	a1 := acme.Vendor("plant", "sensor", idevid.FromSerialNumber)
	a2 := acme.Vendor("lab", "gateway", idevid.FromCN)
	a2.Name = "acme-lab"
	o := other.Vendor("plant", "sensor", idevid.FromSerialNumber)
	revoking := a2
	revoking.CRLs = crls(t, acme.RevokeIntermediateCRL(t, now, now.Add(time.Hour)))

	cases := []struct {
		name    string
		vendors []idevid.Vendor
		chain   []*x509.Certificate
		code    fault.Code
		vendor  string
		device  string
	}{
		{"only match", []idevid.Vendor{o, a1}, chain, "", "acme", "SN-7"},
		{"only match, other order", []idevid.Vendor{a2, o}, chain, "", "acme-lab", "cn-7"},
		// Two registrations trusting one chain decide nothing: neither
		// fleet, allow-list nor CRL set may win by order.
		{"two registrations refuse", []idevid.Vendor{a1, a2}, chain, idevid.Invalid, "", ""},
		{"two registrations refuse, reversed", []idevid.Vendor{a2, a1}, chain, idevid.Invalid, "", ""},
		{"two registrations, one revoking", []idevid.Vendor{revoking, a1}, chain, idevid.Invalid, "", ""},
		{"revoked by the only registration", []idevid.Vendor{o, revoking}, chain, idevid.Revoked, "", ""},
		{"expired is invalid, not unknown", []idevid.Vendor{o, a1}, expired, idevid.Invalid, "", ""},
		{"unregistered vendor", []idevid.Vendor{o, a1, a2}, stranger, idevid.UnknownVendor, "", ""},
		{"no vendors", nil, chain, idevid.UnknownVendor, "", ""},
		{"no chain", []idevid.Vendor{a1}, nil, idevid.UnknownVendor, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 3 { // deterministic: same answer every time
				id, v, err := idevid.Match(c.vendors, c.chain, now)
				if fault.CodeOf(err) != c.code {
					t.Fatalf("got %v, want code %q", err, c.code)
				}
				if c.code == "" && (v.Name != c.vendor || id.Vendor != c.vendor || id.DeviceID != c.device) {
					t.Fatalf("matched %q device %q, want %q device %q", v.Name, id.DeviceID, c.vendor, c.device)
				}
			}
		})
	}
}

func TestDeriveID(t *testing.T) {
	acme := idevidtest.NewVendor(t, "acme")
	dev := func(o idevidtest.DeviceOptions) *x509.Certificate {
		c, _, _ := acme.Device(t, o)
		return c
	}
	hw := func(serial []byte, dns ...string) *x509.Certificate {
		return dev(idevidtest.DeviceOptions{DNSNames: dns, HWModule: &idevidtest.HWModule{Serial: serial}})
	}
	twoSerials := dev(idevidtest.DeviceOptions{SerialNumber: "a"})
	twoSerials.Subject.Names = append(twoSerials.Subject.Names, twoSerials.Subject.Names...)
	cases := []struct {
		name   string
		cert   *x509.Certificate
		from   idevid.IDFrom
		prefix string
		want   string // "" = Invalid
	}{
		{"serial_number", dev(idevidtest.DeviceOptions{SerialNumber: "SN-1"}), idevid.FromSerialNumber, "", "SN-1"},
		{"serial_number with prefix", dev(idevidtest.DeviceOptions{SerialNumber: "SN-1"}), idevid.FromSerialNumber, "acme.", "acme.SN-1"},
		{"serial_number missing", dev(idevidtest.DeviceOptions{CN: "x"}), idevid.FromSerialNumber, "", ""},
		{"serial_number twice", twoSerials, idevid.FromSerialNumber, "", ""},
		{"cn", dev(idevidtest.DeviceOptions{CN: "dev-7"}), idevid.FromCN, "", "dev-7"},
		{"san_dns first", dev(idevidtest.DeviceOptions{DNSNames: []string{"d1.acme.example", "d2"}}), idevid.FromSANDNS, "", "d1.acme.example"},
		{"san_dns missing", dev(idevidtest.DeviceOptions{}), idevid.FromSANDNS, "", ""},
		{"san_uri urn", dev(idevidtest.DeviceOptions{URIs: []string{"urn:dev:ops:acme-1234"}}), idevid.FromSANURI, "", "acme-1234"},
		{"san_uri path", dev(idevidtest.DeviceOptions{URIs: []string{"https://acme.example/devices/d-9"}}), idevid.FromSANURI, "", "d-9"},
		{"san_uri trailing slash", dev(idevidtest.DeviceOptions{URIs: []string{"https://acme.example/devices/"}}), idevid.FromSANURI, "", ""},
		{"san_uri missing", dev(idevidtest.DeviceOptions{}), idevid.FromSANURI, "", ""},
		{"san_hwmodule text", hw([]byte("HW-0042")), idevid.FromHardwareModule, "", "HW-0042"},
		{"san_hwmodule binary to hex", hw([]byte{0x00, 0x01, 0xab, 0xff}), idevid.FromHardwareModule, "hw-", "hw-0001abff"},
		{"san_hwmodule with DNS names too", hw([]byte{0xde, 0xad}, "x.example"), idevid.FromHardwareModule, "", "dead"},
		{"san_hwmodule text with '/' becomes hex", hw([]byte("a/b")), idevid.FromHardwareModule, "", "612f62"},
		{"san_hwmodule empty serial", hw([]byte{}), idevid.FromHardwareModule, "", ""},
		{"san_hwmodule binary too long", hw(make([]byte, 33)), idevid.FromHardwareModule, "", ""},
		{"san_hwmodule missing", dev(idevidtest.DeviceOptions{DNSNames: []string{"x"}}), idevid.FromHardwareModule, "", ""},
		{"san_hwmodule two", dev(idevidtest.DeviceOptions{RawSAN: twoHW(t)}), idevid.FromHardwareModule, "", ""},
		{"bad id: ..", dev(idevidtest.DeviceOptions{CN: "a..b"}), idevid.FromCN, "", ""},
		{"bad id: prefix makes ..", dev(idevidtest.DeviceOptions{CN: ".b"}), idevid.FromCN, "a.", ""},
		{"bad id: /", dev(idevidtest.DeviceOptions{CN: "a/b"}), idevid.FromCN, "", ""},
		{"bad id: too long", dev(idevidtest.DeviceOptions{CN: strings.Repeat("x", 65)}), idevid.FromCN, "", ""},
		{"bad id: prefix makes too long", dev(idevidtest.DeviceOptions{CN: strings.Repeat("x", 60)}), idevid.FromCN, "acme-", ""},
		{"bad id: leading -", dev(idevidtest.DeviceOptions{CN: "-rf"}), idevid.FromCN, "", ""},
		{"bad id: space", dev(idevidtest.DeviceOptions{CN: "a b"}), idevid.FromCN, "", ""},
		{"unknown id_from", dev(idevidtest.DeviceOptions{CN: "a"}), "mac", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := idevid.DeriveID(c.cert, c.from, c.prefix)
			if c.want == "" {
				if !fault.Is(err, idevid.Invalid) {
					t.Fatalf("got %q, %v; want %s", got, err, idevid.Invalid)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
	_, err := idevid.DeriveID(dev(idevidtest.DeviceOptions{CN: "a..b"}), idevid.FromCN, "")
	if !strings.Contains(fault.MessageOf(err), deviceid.Grammar) {
		t.Fatalf("message %q does not name the grammar", fault.MessageOf(err))
	}
}

func twoHW(t *testing.T) []byte {
	one := idevidtest.SAN(t, nil, nil, &idevidtest.HWModule{Serial: []byte("A1")})
	two := idevidtest.SAN(t, nil, nil, &idevidtest.HWModule{Serial: []byte("B2")})
	// Splice the second otherName into the first SEQUENCE (short lengths).
	body := append(append([]byte{}, one[2:]...), two[2:]...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestParseIDFrom(t *testing.T) {
	for _, s := range []string{"serial_number", "cn", "san_dns", "san_uri", "san_hwmodule"} {
		if f, err := idevid.ParseIDFrom(s); err != nil || string(f) != s {
			t.Errorf("%q: %q, %v", s, f, err)
		}
	}
	for _, s := range []string{"", "CN", "serialNumber", "san_hwmodule ", "mac"} {
		if _, err := idevid.ParseIDFrom(s); !fault.Is(err, fault.InvalidArgument) || !strings.Contains(fault.MessageOf(err), "san_hwmodule") {
			t.Errorf("%q: %v, want invalid_argument listing the values", s, err)
		}
	}
}

func TestParseCertificates(t *testing.T) {
	acme := idevidtest.NewVendor(t, "acme")
	both := append(acme.AnchorsPEM(), acme.IntermediatesPEM()...)
	certs, err := idevid.ParseCertificates(both)
	if err != nil || len(certs) != 2 || !certs[0].Equal(acme.Root) || !certs[1].Equal(acme.Intermediate) {
		t.Fatalf("%d certs, %v", len(certs), err)
	}
	key := idevidtest.KeyPEM(t, acme.RootKey)
	for name, in := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("not pem"),
		"trailing junk":   append(append([]byte{}, both...), "junk"...),
		"a key":           key,
		"a key after":     append(append([]byte{}, both...), key...),
		"bad certificate": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"a CRL":           idevidtest.CRLPEM(acme.RootCRL(t, nil, time.Now(), time.Now().Add(time.Hour))),
	} {
		if _, err := idevid.ParseCertificates(in); !fault.Is(err, fault.InvalidArgument) {
			t.Errorf("%s: %v, want invalid_argument", name, err)
		}
	}
}

func TestParseCRL(t *testing.T) {
	now := time.Now()
	acme := idevidtest.NewVendor(t, "acme")
	other := idevidtest.NewVendor(t, "other")
	cas := []*x509.Certificate{acme.Root, acme.Intermediate}
	rootCRL := acme.RevokeIntermediateCRL(t, now, now.Add(time.Hour))
	impostor := idevidtest.NewVendor(t, "acme")
	cases := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"DER root CRL", rootCRL, true},
		{"PEM leaf CRL", idevidtest.CRLPEM(acme.LeafCRL(t, []*big.Int{big.NewInt(5)}, now, now.Add(time.Hour))), true},
		{"signed by a stranger", other.LeafCRL(t, nil, now, now.Add(time.Hour)), false},
		{"impostor using the intermediate's name", impostor.LeafCRL(t, nil, now, now.Add(time.Hour)), false},
		{"impostor using the root's name", impostor.RootCRL(t, nil, now, now.Add(time.Hour)), false},
		{"delta CRL", crlWith(t, acme, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}), false},
		{"unknown critical extension", crlWith(t, acme, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}), false},
		{"unknown non-critical extension", crlWith(t, acme, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}), true},
		{"PEM of another type", idevidtest.CertPEM(acme.Root), false},
		{"PEM with trailing data", append(idevidtest.CRLPEM(rootCRL), "x"...), false},
		{"garbage", []byte("garbage"), false},
		{"empty", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			crl, err := idevid.ParseCRL(c.in, cas)
			if c.ok != (err == nil) {
				t.Fatalf("got %v, want ok=%v", err, c.ok)
			}
			if !c.ok && !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("code %s, want invalid_argument", fault.CodeOf(err))
			}
			if c.ok && crl == nil {
				t.Fatal("nil CRL")
			}
		})
	}
}

func TestNormalizeSerial(t *testing.T) {
	cases := []struct{ in, want string }{
		{"1234", "1234"},
		{"0x00AB", "ab"},
		{"0X0a:Bc", "abc"},
		{"00:01:ab:ff", "1abff"},
		{" ab ", "ab"},
		{"0", "0"},
		{"00:00", "0"},
		{strings.Repeat("f", 64), strings.Repeat("f", 64)},
		{"00" + strings.Repeat("f", 64), strings.Repeat("f", 64)},
		{"", ""},
		{"0x", ""},
		{"xyz", ""},
		{"-1", ""},
		{":ab", ""},
		{"ab:", ""},
		{"a::b", ""},
		{"a b", ""},
		{strings.Repeat("f", 65), ""},
		{"12\x00", ""},
	}
	for _, c := range cases {
		got, err := idevid.NormalizeSerial(c.in)
		if c.want == "" {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Errorf("%q: %q, %v; want invalid_argument", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	// The Identity form and the allow-list form agree.
	acme := idevidtest.NewVendor(t, "acme")
	leaf, _, chain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "s", Serial: new(big.Int).SetBytes([]byte{0x0a, 0xbc, 0x00})})
	id, err := acme.Vendor("f", "p", idevid.FromSerialNumber).Check(chain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	norm, _ := idevid.NormalizeSerial(strings.ToUpper(hex.EncodeToString(leaf.SerialNumber.Bytes())))
	if id.Serial != norm || id.Serial != "abc00" {
		t.Fatalf("identity serial %q, normalised %q", id.Serial, norm)
	}
}

func TestParseAllowList(t *testing.T) {
	cases := []struct {
		name string
		in   string
		max  int
		want []string
		err  string // in the message; "" = ok
	}{
		{name: "plain", in: "ab\n0x0C\n", want: []string{"ab", "c"}},
		{name: "header and extra columns", in: "serial,model\nAB:CD,x\n00ef, y\n", want: []string{"abcd", "ef"}},
		{name: "header any case, BOM", in: "\xef\xbb\xbfSerial\nab\n", want: []string{"ab"}},
		{name: "comments and empty lines", in: "# vendor export\n\nab\n   \n#cd\n\r\nef\r\n", want: []string{"ab", "ef"}},
		{name: "duplicates collapse, order kept", in: "b\na\n0b\nB\na\n", want: []string{"b", "a"}},
		{name: "duplicates do not count towards max", in: "a\na\na\nb\n", max: 2, want: []string{"a", "b"}},
		{name: "empty", in: "", want: nil},
		{name: "header only", in: "serial\n", want: nil},
		{name: "over max", in: "a\nb\nc\n", max: 2, err: "more than 2"},
		{name: "bad serial names its line", in: "serial\nab\n\nzz\n", err: "line 4"},
		{name: "header not first", in: "ab\nserial\n", err: "line 2"},
		{name: "empty first column", in: ",x\n", err: "line 1"},
		{name: "bad quoting names its line", in: "ab\n\"a\"b\n", err: "line 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := idevid.ParseAllowList(strings.NewReader(c.in), c.max)
			if c.err != "" {
				if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(fault.MessageOf(err), c.err) {
					t.Fatalf("got %v, want invalid_argument saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var serials []string
			for _, e := range got {
				serials = append(serials, e.Serial)
			}
			if strings.Join(serials, ",") != strings.Join(c.want, ",") {
				t.Fatalf("got %q, want %q", serials, c.want)
			}
		})
	}
}

// crlWith is a root CRL carrying ext.
func crlWith(t *testing.T, v *idevidtest.VendorPKI, ext pkix.Extension) []byte {
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(99), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		ExtraExtensions: []pkix.Extension{ext},
	}, v.Root, v.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
