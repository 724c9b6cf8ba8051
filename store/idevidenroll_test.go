package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestIDevIDEnrollments: an IDevID is claimed once at a time, enrolls once
// (the claim of a second first enrollment is refused), commits only with
// its claim, re-enrolls its own device superseding the active certificate,
// and of many concurrent claims exactly one holds — on both databases.
func TestIDevIDEnrollments(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("first", func(t *testing.T) { testIDevIDFirst(t, backend) })
			t.Run("reenroll", func(t *testing.T) { testIDevIDReenroll(t, backend) })
			t.Run("refusals", func(t *testing.T) { testIDevIDRefusals(t, backend) })
			t.Run("race", func(t *testing.T) { testIDevIDRace(t, backend) })
		})
	}
}

func idevidClaim(key, dev, id string, until time.Time) store.IDevIDClaim {
	return store.IDevIDClaim{Claim: claim(id, until), Key: key, Fleet: fleet, Vendor: "acme",
		Issuer: "CN=ACME Device CA", IDevIDSerial: "1f", DeviceID: dev}
}

func idevidEnrollment(key, dev, serial, claimID string, at time.Time) store.IDevIDEnrollment {
	return store.IDevIDEnrollment{Key: key, Device: store.Device{ID: dev, Fleet: fleet, Profile: profile},
		Cert: certificate(dev, serial, at), At: at, Claim: claimID,
		Audit: &store.AuditEvent{Actor: "device:" + dev, Action: "device.enroll_idevid", ObjectType: "device", ObjectID: dev,
			Detail: "vendor=acme idevid_issuer=CN=ACME Device CA idevid_serial=1f serial=" + serial}}
}

func testIDevIDFirst(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	ttl := 30 * time.Second
	wantCode(t, second(s.GetIDevIDEnrollment(ctx, "k1")), fault.NotFound)

	noErr(t, s.ClaimIDevID(ctx, idevidClaim("k1", "acme-1", "a", base.Add(ttl)), base))
	// Held: another claim is refused until the first lapses.
	wantCode(t, s.ClaimIDevID(ctx, idevidClaim("k1", "acme-1", "b", base.Add(ttl+time.Second)), base.Add(time.Second)), fault.Conflict)
	r := must(s.GetIDevIDEnrollment(ctx, "k1"))(t)
	if r.Enrolled() || r.ClaimUntil == nil || !r.ClaimUntil.Equal(base.Add(ttl)) || r.Vendor != "acme" || r.IDevIDSerial != "1f" {
		t.Fatalf("claimed record %+v", r)
	}
	// The commit needs the claim.
	wantCode(t, second(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k1", "acme-1", "s1", "b", base))), fault.Conflict)
	wantCode(t, second(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k1", "acme-1", "s1", "", base))), fault.InvalidArgument)
	if _, err := s.GetDevice(ctx, "acme-1"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("a refused commit left device acme-1: %v", err)
	}
	dev := must(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k1", "acme-1", "s1", "a", base)))(t).Device
	if dev.ID != "acme-1" || dev.Status != store.DeviceActive || dev.Fleet != fleet || dev.Profile != profile {
		t.Fatalf("device %+v", dev)
	}
	r = must(s.GetIDevIDEnrollment(ctx, "k1"))(t)
	if !r.Enrolled() || r.DeviceID != "acme-1" || r.CertSerial != "s1" || r.ActiveSerial != "s1" || r.Enrollments != 1 ||
		r.ClaimUntil != nil || r.EnrolledAt == nil || !r.EnrolledAt.Equal(base) {
		t.Fatalf("enrolled record %+v", r)
	}
	if c := must(s.GetCertificate(ctx, "s1"))(t); c.Status != store.CertActive || c.DeviceID != "acme-1" {
		t.Fatalf("certificate %+v", c)
	}
	ev := must(s.ListAudit(ctx, store.AuditFilter{Action: "device.enroll_idevid"}))(t)
	if len(ev) != 1 || ev[0].ObjectID != "acme-1" || !strings.Contains(ev[0].Detail, "idevid_serial=1f serial=s1") {
		t.Fatalf("audit %+v", ev)
	}
	// Once enrolled, a first enrollment's claim is refused even after the
	// TTL; so is a re-enrollment's for another device.
	later := base.Add(time.Hour)
	wantCode(t, s.ClaimIDevID(ctx, idevidClaim("k1", "acme-1", "c", later.Add(ttl)), later), fault.Conflict)
	re := idevidClaim("k1", "acme-2", "c", later.Add(ttl))
	re.Reenroll = true
	wantCode(t, s.ClaimIDevID(ctx, re, later), fault.Conflict)
}

func testIDevIDReenroll(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	ttl := 30 * time.Second
	noErr(t, s.ClaimIDevID(ctx, idevidClaim("k1", "acme-1", "a", base.Add(ttl)), base))
	must(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k1", "acme-1", "s1", "a", base)))(t)

	at := base.Add(time.Minute)
	c := idevidClaim("k1", "acme-1", "b", at.Add(ttl))
	c.Reenroll = true
	noErr(t, s.ClaimIDevID(ctx, c, at))
	e := idevidEnrollment("k1", "acme-1", "s2", "b", at)
	e.Reenroll, e.OldSerial = true, "s1"
	e.Audit.Action = "device.reenroll_idevid"
	// The old certificate must be claimed by the same claim (ClaimRenewal).
	wantCode(t, second(s.CompleteIDevIDEnrollment(ctx, e)), fault.Conflict)
	noErr(t, s.ClaimRenewal(ctx, "acme-1", "s1", c.Claim, at))
	old := must(s.CompleteIDevIDEnrollment(ctx, e))(t).Old
	if old.Serial != "s1" || old.Status != store.CertSuperseded || old.RevokeAfter == nil {
		t.Fatalf("old certificate %+v, want superseded with a revoke_after", old)
	}
	if cur := must(s.GetCertificate(ctx, "s2"))(t); cur.Status != store.CertActive {
		t.Fatalf("new certificate %s", cur.Status)
	}
	r := must(s.GetIDevIDEnrollment(ctx, "k1"))(t)
	if r.CertSerial != "s2" || r.ActiveSerial != "s2" || r.Enrollments != 2 || r.DeviceID != "acme-1" {
		t.Fatalf("record after re-enrollment %+v", r)
	}
	ev := must(s.ListAudit(ctx, store.AuditFilter{Action: "device.reenroll_idevid"}))(t)
	if len(ev) != 1 || !strings.Contains(ev[0].Detail, "old=s1 old_revoked_after=") {
		t.Fatalf("audit %+v", ev)
	}

	// A revoked device does not come back by re-enrolling.
	must(s.RevokeDevice(ctx, "acme-1", 1, at, nil))(t)
	at2 := at.Add(time.Minute)
	c2 := idevidClaim("k1", "acme-1", "d", at2.Add(ttl))
	c2.Reenroll = true
	noErr(t, s.ClaimIDevID(ctx, c2, at2))
	e2 := idevidEnrollment("k1", "acme-1", "s3", "d", at2)
	e2.Reenroll = true
	wantCode(t, second(s.CompleteIDevIDEnrollment(ctx, e2)), fault.DeviceNotActive)
	if _, err := s.GetCertificate(ctx, "s3"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("refused re-enrollment left certificate s3: %v", err)
	}
	// The discard of what it signed lets the claim go in the same write.
	noErr(t, s.DiscardCertificate(ctx, certificate("acme-1", "s3", at2), "test", at2, store.ClaimRef{IDevIDKey: "k1", ID: "d"}, nil))
	if r := must(s.GetIDevIDEnrollment(ctx, "k1"))(t); r.ClaimUntil != nil || r.CertSerial != "s2" {
		t.Fatalf("record after discard %+v", r)
	}
}

func testIDevIDRefusals(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	ttl := 30 * time.Second
	// A device id that exists is refused at the claim, before signing,
	// and the refused claim leaves nothing behind.
	must(s.CreateDevice(ctx, store.Device{ID: "taken", Fleet: fleet, Profile: profile, Status: store.DeviceActive}, nil))(t)
	wantCode(t, s.ClaimIDevID(ctx, idevidClaim("k2", "taken", "a", base.Add(ttl)), base), fault.AlreadyExists)
	wantCode(t, second(s.GetIDevIDEnrollment(ctx, "k2")), fault.NotFound)
	// So is an id fixed to a live token.
	must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "fixed", Fleet: fleet, Profile: profile, ExpiresAt: base.Add(time.Hour),
		CreatedBy: "test"}, []store.NewToken{{Hash: "t1", DeviceID: "reserved"}}, nil))(t)
	wantCode(t, s.ClaimIDevID(ctx, idevidClaim("k3", "reserved", "a", base.Add(ttl)), base), fault.DeviceIDReserved)
	// Release: only the holder's, then it may be claimed at once.
	noErr(t, s.ClaimIDevID(ctx, idevidClaim("k4", "dev-4", "a", base.Add(ttl)), base))
	noErr(t, s.ReleaseIDevIDClaim(ctx, "k4", "b"))
	wantCode(t, s.ClaimIDevID(ctx, idevidClaim("k4", "dev-4", "b", base.Add(ttl)), base), fault.Conflict)
	noErr(t, s.ReleaseIDevIDClaim(ctx, "k4", "a"))
	noErr(t, s.ClaimIDevID(ctx, idevidClaim("k4", "dev-4", "b", base.Add(ttl)), base))
	// A lapsed claim is taken over, and its holder can no longer commit.
	later := base.Add(ttl)
	noErr(t, s.ClaimIDevID(ctx, idevidClaim("k4", "dev-4", "c", later.Add(ttl)), later))
	wantCode(t, second(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k4", "dev-4", "s4", "b", later))), fault.Conflict)
	must(s.CompleteIDevIDEnrollment(ctx, idevidEnrollment("k4", "dev-4", "s4", "c", later)))(t)
	wantCode(t, s.ClaimIDevID(ctx, store.IDevIDClaim{Key: "k5"}, base), fault.InvalidArgument)
}

// testIDevIDRace: of 32 claims of one IDevID at once exactly one holds.
func testIDevIDRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	warm(t, s)
	const n = 32
	errs := make([]error, n)
	testrace.Run(n, func(i int) {
		errs[i] = s.ClaimIDevID(ctx, idevidClaim("k1", "acme-1", fmt.Sprint("c", i), base.Add(time.Minute)), base)
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantCode(t, err, fault.Conflict)
	}
	if won != 1 {
		t.Fatalf("%d claims held at once, want 1", won)
	}
}
