package enroll_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestIDevIDRecordOwnerIsTheEnroller: an IDevID's first attempt, through
// registration acme of fleet prod, fails after its claim; it then enrolls
// through acme-lab of fleet lab (trusting the same PKI's intermediate: the
// vendors service refuses that, but a store may hold registrations from
// before). The record must name lab, so that prod's registration, which
// allows re-enrollment, cannot re-enroll lab's device.
func TestIDevIDRecordOwnerIsTheEnroller(t *testing.T) {
	e := newIDevIDEnv(t, "sqlite", newCADir(t))
	ctx := context.Background()
	for _, f := range []string{"prod", "lab"} {
		if _, err := e.db.Real().CreateFleet(ctx, store.Fleet{Name: f}, nil); err != nil {
			t.Fatal(err)
		}
	}
	x := e.vendorRow(e.pki, "acme", func(r *store.IDevIDVendor) { r.Fleet, r.IntermediatesPEM, r.AllowReenroll = "prod", "", true })
	y := e.vendorRow(e.pki, "acme-lab", func(r *store.IDevIDVendor) {
		r.Fleet, r.AnchorsPEM, r.IntermediatesPEM = "lab", string(idevidtest.CertPEM(e.pki.Intermediate)), ""
	})
	chain, _ := e.device(t, "SN1")
	e.vendors.set(x)
	e.db.FailNth("CompleteIDevIDEnrollment", 1, errors.New("injected: commit lost"))
	if _, err := e.enroll(chain, testpki.Key(t, "P-256"), t); err == nil {
		t.Fatal("injected failure did not fail")
	}
	e.vendors.set(y)
	first, err := e.enroll(chain, testpki.Key(t, "P-256"), t)
	if err != nil {
		t.Fatalf("enroll through lab: %v", err)
	}
	// The record names the registration that enrolled the device, not the
	// one whose attempt failed first.
	vy := idevid.Vendor{Name: "acme-lab", Fleet: "lab", Anchors: []*x509.Certificate{e.pki.Intermediate}, IDFrom: idevid.FromSerialNumber}
	id, err := vy.Check(chain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.db.Real().GetIDevIDEnrollment(ctx, id.Key)
	if err != nil || rec.Fleet != "lab" || rec.Vendor != "acme-lab" || rec.DeviceID != first.Device.ID {
		t.Fatalf("record %+v %v, want fleet lab, vendor acme-lab, device %s", rec, err, first.Device.ID)
	}
	// The prod registration (re-enrollment allowed) cannot reach lab's device.
	e.vendors.set(x)
	if res, err := e.enroll(chain, testpki.Key(t, "P-256"), t); !fault.Is(err, idevid.Used) {
		t.Errorf("registration acme (fleet prod) re-enrolling lab's device: %+v %v, want idevid_used", res.Device, err)
	}
	// Both registrations at once: the chain links to two, and neither decides.
	e.vendors.set(x, y)
	if _, err := e.enroll(chain, testpki.Key(t, "P-256"), t); !fault.Is(err, idevid.Invalid) {
		t.Errorf("a chain two registrations trust: %v, want idevid_invalid", err)
	}
}
