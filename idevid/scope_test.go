package idevid_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// scopedCRL is a CRL of acme's intermediate scoped to the distribution
// point uri (an issuingDistributionPoint with a fullName URI).
func scopedCRL(t *testing.T, acme *idevidtest.VendorPKI, n int64, uri string, next time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	gn := append([]byte{0x86, byte(len(uri))}, uri...)
	full := append([]byte{0xa0, byte(len(gn))}, gn...)
	dp := append([]byte{0xa0, byte(len(full))}, full...)
	idp := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: append([]byte{0x30, byte(len(dp))}, dp...)}
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: next.Add(-2 * time.Hour),
		NextUpdate: next, RevokedCertificateEntries: entries, ExtraExtensions: []pkix.Extension{idp}}, acme.Intermediate, acme.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCheckPartitionedCRLs: a scoped CRL's revocations count for every
// certificate of its issuer; its freshness only for the certificates whose
// distribution points it covers.
func TestCheckPartitionedCRLs(t *testing.T) {
	now := time.Now()
	acme := idevidtest.NewVendor(t, "acme")
	p1, p2 := "http://acme.example/p1.crl", "http://acme.example/p2.crl"
	_, _, inP1 := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-1", CRLDistributionPoints: []string{p1}})
	_, _, inP2 := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-2", CRLDistributionPoints: []string{p2}})
	revokedLeaf, _, revoked := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-3", CRLDistributionPoints: []string{p2}})
	fresh1 := scopedCRL(t, acme, 1, p1, now.Add(time.Hour), revokedLeaf.SerialNumber)
	stale2 := scopedCRL(t, acme, 2, p2, now.Add(-time.Minute))
	for _, der := range [][]byte{fresh1, stale2} {
		if scope, err := idevid.CRLScope(mustParseCRL(t, der)); err != nil || len(scope) != 1 {
			t.Fatalf("scope %v %v", scope, err)
		}
	}
	v := acme.Vendor("plant", "sensor", idevid.FromSerialNumber)
	v.CRLs = crls(t, fresh1, stale2)
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		code  fault.Code
	}{
		{"covered by the fresh partition", inP1, ""},
		{"covered by the stale partition", inP2, idevid.CRLStale},
		{"listed on another partition", revoked, idevid.Revoked},
	} {
		if _, err := v.Check(tc.chain, now); fault.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.code)
		}
	}
}

func mustParseCRL(t *testing.T, der []byte) *x509.RevocationList {
	t.Helper()
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// FuzzCRLScope: any issuingDistributionPoint value parses to URIs or an
// invalid_argument, never a panic; a scope is never empty.
func FuzzCRLScope(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0x81, 0x01, 0xff})
	f.Add([]byte{0x30, 0x0b, 0xa0, 0x09, 0xa0, 0x07, 0x86, 0x05, 'h', 't', 't', 'p', ':'})
	f.Fuzz(func(t *testing.T, value []byte) {
		crl := &x509.RevocationList{Extensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Value: value}}}
		scope, err := idevid.CRLScope(crl)
		if err != nil && !fault.Is(err, fault.InvalidArgument) {
			t.Fatalf("%x: %v", value, err)
		}
		if err == nil && scope != nil && len(scope) == 0 {
			t.Fatalf("%x: an empty scope", value)
		}
	})
}
