package enroll_test

import (
	"context"
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
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// Regression tests of an adversarial review of IDevID enrollment.

// TestIDevIDRetiredIntermediateKeepsVendor: an intermediate removed from a
// registration leaves its stored CRL behind; the vendor's other devices
// still enroll (a CRL is checked against the chain's issuer, not against
// the registration).
func TestIDevIDRetiredIntermediateKeepsVendor(t *testing.T) {
	e := newIDevIDEnv(t, "sqlite", newCADir(t))
	k2 := testpki.Key(t, "P-256")
	i2 := e.pki.NewIntermediate(t, "ACME Old CA", k2, time.Now().Add(-time.Hour), time.Now().AddDate(5, 0, 0))
	crl := e.pki.CRL(t, i2, k2, nil, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	row := e.vendorRow(e.pki, "acme", func(r *store.IDevIDVendor) {
		r.IntermediatesPEM = string(idevidtest.CertPEM(e.pki.Intermediate, i2))
		r.CRLs = [][]byte{crl}
	})
	e.vendors.set(row)
	c1, _ := e.device(t, "D1")
	if _, err := e.enroll(c1, testpki.Key(t, "P-256"), t); err != nil {
		t.Fatal(err)
	}
	// Operator retires "ACME Old CA" (UpdateIDevIDVendor keeps its CRL).
	row.IntermediatesPEM = string(idevidtest.CertPEM(e.pki.Intermediate))
	row.UpdatedAt = row.UpdatedAt.Add(time.Second)
	e.vendors.set(row)
	c2, _ := e.device(t, "D2")
	_, err := e.enroll(c2, testpki.Key(t, "P-256"), t)
	if err != nil {
		t.Errorf("retiring one intermediate refused a device of another: %v", err)
	}
}

// TestIDevIDOtherVendorCannotReachRecord: another registered vendor whose
// CA copies this vendor's intermediate name issues a leaf with a victim
// IDevID's serial: it must not reach the victim's record (a repeat or a
// re-enrollment of the victim's device in the victim's fleet).
func TestIDevIDOtherVendorCannotReachRecord(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { idevidCrossVendor(t, backend, caDir) })
	}
}

func idevidCrossVendor(t *testing.T, backend, caDir string) {
	e := newIDevIDEnv(t, backend, caDir)
	ctx := context.Background()
	for _, f := range []string{"prod", "lab"} {
		if _, err := e.db.Real().CreateFleet(ctx, store.Fleet{Name: f}, nil); err != nil {
			t.Fatal(err)
		}
	}
	evil := idevidtest.NewVendor(t, "EVIL")
	acmeRow := e.vendorRow(e.pki, "acme", func(r *store.IDevIDVendor) { r.Fleet = "prod" }) // no re-enroll
	evilRow := e.vendorRow(evil, "evil", func(r *store.IDevIDVendor) {
		r.Fleet, r.AllowReenroll, r.IDPrefix = "lab", true, "evil-"
	})
	e.vendors.set(evilRow, acmeRow)
	victim, _ := e.device(t, "SN1")
	vres, err := e.enroll(victim, testpki.Key(t, "P-256"), t)
	if err != nil || vres.Device.Fleet != "prod" {
		t.Fatalf("victim: %+v %v", vres.Device, err)
	}
	// EVIL's own intermediate, named exactly like ACME's.
	ik := testpki.Key(t, "P-256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), RawSubject: e.pki.Intermediate.RawSubject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, evil.Root, ik.Public(), evil.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	fakeInt, _ := x509.ParseCertificate(der)
	_, _, forged := evil.Device(t, idevidtest.DeviceOptions{SerialNumber: "X", Serial: victim[0].SerialNumber, Issuer: fakeInt, IssuerKey: ik})
	attackerKey := testpki.Key(t, "P-256")
	res, err := e.enroll(forged, attackerKey, t)
	if err == nil && (res.Device.ID == vres.Device.ID || res.Device.Fleet != "lab") {
		t.Errorf("vendor evil (fleet lab) obtained a certificate for %s of fleet %s", res.Device.ID, res.Device.Fleet)
	}
	if old, err := e.db.Real().GetCertificate(ctx, vres.Serial); err != nil || old.Status != store.CertActive {
		t.Errorf("the victim's certificate is %s (%v), want active", old.Status, err)
	}
}

// idp is a critical issuingDistributionPoint naming partition uri.
func idp(uri string) pkix.Extension {
	gn := append([]byte{0x86, byte(len(uri))}, uri...)
	full := append([]byte{0xa0, byte(len(gn))}, gn...)
	dp := append([]byte{0xa0, byte(len(full))}, full...)
	seq := append([]byte{0x30, byte(len(dp))}, dp...)
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: seq}
}

// TestIDevIDPartitionedCRLs: CRLs scoped by an issuingDistributionPoint
// (partitions of the issuer's CRL) are kept side by side, so importing one
// never un-revokes what another listed; other scopes are refused.
func TestIDevIDPartitionedCRLs(t *testing.T) {
	e := newIDevIDEnv(t, "sqlite", newCADir(t))
	ctx := context.Background()
	vs, err := vendors.New(vendors.Config{Registry: e.db.Real(), Lists: e.db.Real()})
	if err != nil {
		t.Fatal(err)
	}
	row := e.vendorRow(e.pki, "acme", func(*store.IDevIDVendor) {})
	if _, err := vs.Create(ctx, "admin", row); err != nil {
		t.Fatal(err)
	}
	victim, _ := e.device(t, "REVOKED1")
	mk := func(n int64, uri string, revoked ...*big.Int) []byte {
		var entries []x509.RevocationListEntry
		for _, s := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n),
			ThisUpdate: time.Now().Add(-time.Minute + time.Duration(n)*time.Second), NextUpdate: time.Now().Add(24 * time.Hour),
			RevokedCertificateEntries: entries, ExtraExtensions: []pkix.Extension{idp(uri)}}, e.pki.Intermediate, e.pki.IntermediateKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	load := func() {
		rows, err := e.db.Real().ListIDevIDVendors(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		e.vendors.set(rows...)
	}
	// One CRL is kept per issuer and scope: partition 2 is stored beside
	// partition 1, never over it, and what partition 1 revoked stays
	// revoked.
	if _, err := vs.ImportCRL(ctx, "admin", "default", "acme", mk(1, "http://acme/p1.crl", victim[0].SerialNumber)); err != nil {
		t.Fatalf("partition 1: %v", err)
	}
	load()
	if _, err := e.enroll(victim, testpki.Key(t, "P-256"), t); !fault.Is(err, idevid.Revoked) {
		t.Fatalf("with partition 1: %v, want idevid_revoked", err)
	}
	if _, err := vs.ImportCRL(ctx, "admin", "default", "acme", mk(2, "http://acme/p2.crl")); err != nil {
		t.Fatalf("partition 2: %v", err)
	}
	load()
	if rows, _ := e.db.Real().ListIDevIDVendors(ctx, ""); len(rows) != 1 || len(rows[0].CRLs) != 2 {
		t.Fatalf("stored CRLs: %d, want both partitions", len(rows[0].CRLs))
	}
	if _, err := e.enroll(victim, testpki.Key(t, "P-256"), t); !fault.Is(err, idevid.Revoked) {
		t.Fatalf("after partition 2: %v, want idevid_revoked", err)
	}
	// A CRL limited to some certificates (here: user certificates only)
	// is refused: what it leaves out is not said.
	userOnly := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0x03, 0x81, 0x01, 0xff}}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(9), ThisUpdate: time.Now(),
		NextUpdate: time.Now().Add(time.Hour), ExtraExtensions: []pkix.Extension{userOnly}}, e.pki.Intermediate, e.pki.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vs.ImportCRL(ctx, "admin", "default", "acme", der); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("a CRL of user certificates only: %v, want invalid_argument", err)
	}
}
