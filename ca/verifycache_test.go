package ca_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// The verified-certificate cache answers exactly what a full verification
// would: the same identity for a certificate seen before, nothing cached
// for a refused one, and an expired certificate refused even though it was
// cached while valid.
func TestVerifyClientCertCache(t *testing.T) {
	now := time.Now()
	c, _ := newCA(t, func(cfg *ca.Config) { cfg.Now = func() time.Time { return now } })
	other, _ := newCA(t, nil)
	issue := func(authority *ca.CA, id string) *x509.Certificate {
		t.Helper()
		req := ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))), Fleet: "f",
			DeviceID: id, Validity: time.Hour}
		leaf, err := authority.Issue(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Leaf
	}
	mine, foreign := issue(c, "d1"), issue(other, "d1")

	for i := range 3 {
		if id, err := c.VerifyClientCert(mine); err != nil || id != "d1" {
			t.Fatalf("own certificate, try %d: %q %v", i, id, err)
		}
	}
	if n := c.VerifiedLen(); n != 1 {
		t.Fatalf("cache holds %d after three verifications of one certificate, want 1", n)
	}
	for i := range 2 {
		if _, err := c.VerifyClientCert(foreign); fault.CodeOf(err) != fault.CertInvalid {
			t.Fatalf("foreign certificate, try %d: %v", i, err)
		}
	}
	if n := c.VerifiedLen(); n != 1 {
		t.Fatalf("cache holds %d after a refused certificate, want 1 (only successes)", n)
	}
	// The same bytes with one bit of the signature flipped are another
	// certificate: verified afresh and refused.
	bad := append([]byte(nil), mine.Raw...)
	bad[len(bad)-3] ^= 0x01
	tampered, err := x509.ParseCertificate(bad)
	if err != nil {
		t.Fatalf("the tampered certificate must still parse (only its signature changed): %v", err)
	}
	if _, err := c.VerifyClientCert(tampered); fault.CodeOf(err) != fault.CertInvalid {
		t.Fatalf("tampered certificate: %v", err)
	}
	// Past the leaf's NotAfter the cached success no longer counts.
	now = mine.NotAfter.Add(time.Second)
	if _, err := c.VerifyClientCert(mine); fault.CodeOf(err) != fault.CertInvalid {
		t.Fatalf("expired certificate answered from the cache: %v", err)
	}
}

// VerifyClientDER answers as VerifyClientCert does, from the bytes: the
// identity and serial of the CA's own certificate (from the cache after the
// first), and CertInvalid for a foreign, tampered, truncated or
// non-certificate input, and for a cached certificate past its expiry.
func TestVerifyClientDER(t *testing.T) {
	now := time.Now()
	c, _ := newCA(t, func(cfg *ca.Config) { cfg.Now = func() time.Time { return now } })
	other, _ := newCA(t, nil)
	issue := func(authority *ca.CA) *x509.Certificate {
		t.Helper()
		req := ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))), Fleet: "f",
			DeviceID: "d1", Validity: time.Hour}
		leaf, err := authority.Issue(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Leaf
	}
	mine, foreign := issue(c), issue(other)
	for i := range 2 {
		id, serial, err := c.VerifyClientDER(mine.Raw)
		if err != nil || id != "d1" || serial != ca.SerialHex(mine.SerialNumber) {
			t.Fatalf("own certificate, try %d: %q %q %v", i, id, serial, err)
		}
		if n := c.VerifiedLen(); n != 1 {
			t.Fatalf("try %d: cache holds %d, want 1", i, n)
		}
	}
	tampered := append([]byte(nil), mine.Raw...)
	tampered[len(tampered)-3] ^= 0x01
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"foreign CA", foreign.Raw},
		{"tampered signature", tampered},
		{"truncated", mine.Raw[:len(mine.Raw)/2]},
		{"empty", nil},
		{"not DER", []byte("-----BEGIN CERTIFICATE-----")},
	} {
		if id, _, err := c.VerifyClientDER(tc.der); fault.CodeOf(err) != fault.CertInvalid || id != "" {
			t.Errorf("%s: %q %v, want CertInvalid", tc.name, id, err)
		}
	}
	if n := c.VerifiedLen(); n != 1 {
		t.Errorf("cache holds %d after refusals, want 1", n)
	}
	now = mine.NotAfter.Add(time.Second)
	if _, _, err := c.VerifyClientDER(mine.Raw); fault.CodeOf(err) != fault.CertInvalid {
		t.Errorf("expired certificate answered from the cache: %v", err)
	}
}
