package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestAuditInTransaction: every state change writes its audit event in its
// own transaction, so when the audit insert fails (a trigger refuses it) the
// change fails and nothing of it is left.
func TestAuditInTransaction(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { testAuditInTransaction(t, backend) })
	}
}

func testAuditInTransaction(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	s := open(t, dsn, nil)
	clk := &clock{now: base}
	s.SetClock(clk.Now)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}))(t)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	must(s.CompleteEnrollment(ctx, enrollment("t2", "dev-2", "s2", base)))(t)
	clk.Set(base.Add(20 * 24 * time.Hour))

	// While audit inserts work, the event commits with the change.
	ev := func(action string) *store.AuditEvent {
		return &store.AuditEvent{Actor: "test", Action: action, ObjectType: "x", ObjectID: "y", Detail: "d"}
	}
	must(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-2", OldSerial: "s2",
		Cert: certificate("dev-2", "s2b", clk.Now()), Audit: ev("device.renew")}))(t)
	es := must(s.ListAudit(ctx, store.AuditFilter{Action: "device.renew"}))(t)
	if len(es) != 1 || !strings.HasPrefix(es[0].Detail, "d old_revoked_after=") {
		t.Fatalf("renewal audit = %+v, want one event with the old certificate's fate", es)
	}

	testdb.FailAuditInserts(t, dsn)
	before := must(s.ListAudit(ctx, store.AuditFilter{Limit: 1000}))(t)

	cases := []struct {
		name   string
		change func() error
		// unchanged fails the test if any of the change is visible.
		unchanged func(t *testing.T)
	}{
		{"renewal", func() error {
			_, err := s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-1", OldSerial: "s1",
				Cert: certificate("dev-1", "s1b", clk.Now()), Audit: ev("device.renew")})
			return err
		}, func(t *testing.T) {
			if c := must(s.GetCertificate(ctx, "s1"))(t); c.Status != store.CertActive {
				t.Errorf("old certificate is %s, want active", c.Status)
			}
			if _, err := s.GetCertificate(ctx, "s1b"); err == nil {
				t.Error("the renewed certificate was stored")
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.change(); err == nil {
				t.Fatal("the change succeeded although its audit event could not be written")
			}
			c.unchanged(t)
		})
	}
	after := must(s.ListAudit(ctx, store.AuditFilter{Limit: 1000}))(t)
	if len(after) != len(before) {
		t.Errorf("audit events: %d before, %d after", len(before), len(after))
	}
}
