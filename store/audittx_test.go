package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
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
	clk := testclock.New(base)
	s.SetClock(clk.Now)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	must(s.CompleteEnrollment(ctx, enrollment("t2", "dev-2", "s2", base)))(t)
	must(s.CreateFleet(ctx, store.Fleet{Name: "f2", Description: "kept"}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: "p2", KeyTypes: []string{"ecdsa-p256"},
		Validity: time.Hour, RenewWindow: time.Minute}, nil))(t)
	must(s.CreateDevice(ctx, store.Device{ID: "dev-p", Fleet: fleet, Profile: profile, Status: store.DevicePending,
		Labels: map[string]string{"k": "kept"}}, nil))(t)
	ev := func(action string) *store.AuditEvent {
		return &store.AuditEvent{Actor: "test", Action: action, ObjectType: "x", ObjectID: "y", Detail: "d"}
	}
	pv := must(s.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: "p1", CreatedBy: "test"}, ev("policy.create")))(t)
	if es := must(s.ListAudit(ctx, store.AuditFilter{Action: "policy.create"}))(t); len(es) != 1 || es[0].ObjectID != "1" {
		t.Fatalf("policy.create audit = %+v, want object id 1", es)
	}
	must(s.ActivatePolicyVersion(ctx, pv.Version, "test", nil))(t)
	pv2 := must(s.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: "p2", CreatedBy: "test"}, nil))(t)
	u1 := must(s.CreateAdminUser(ctx, store.AdminUser{Username: "u1", PasswordHash: "h1", Role: "viewer"}, nil))(t)
	must(s.CreateAdminSession(ctx, store.AdminSession{ID: "sess-1", UserID: u1.ID, CreatedAt: base,
		ExpiresAt: base.Add(time.Hour), LastSeenAt: base}, nil))(t)
	clk.Set(base.Add(20 * 24 * time.Hour))

	// While audit inserts work, the event commits with the change.
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
		{"fleet create", func() error {
			_, err := s.CreateFleet(ctx, store.Fleet{Name: "f3"}, ev("fleet.create"))
			return err
		}, gone(func() error { _, err := s.GetFleet(ctx, "f3"); return err })},
		{"fleet update", func() error {
			_, err := s.UpdateFleet(ctx, store.Fleet{Name: "f2", Description: "changed"}, ev("fleet.update"))
			return err
		}, func(t *testing.T) {
			if f := must(s.GetFleet(ctx, "f2"))(t); f.Description != "kept" {
				t.Errorf("description = %q, want kept", f.Description)
			}
		}},
		{"fleet delete", func() error { return s.DeleteFleet(ctx, "f2", ev("fleet.delete")) },
			kept(func() error { _, err := s.GetFleet(ctx, "f2"); return err })},
		{"profile create", func() error {
			_, err := s.CreateProfile(ctx, store.Profile{Name: "p3", KeyTypes: []string{"ecdsa-p256"},
				Validity: time.Hour}, ev("profile.create"))
			return err
		}, gone(func() error { _, err := s.GetProfile(ctx, "p3"); return err })},
		{"profile update", func() error {
			_, err := s.UpdateProfile(ctx, store.Profile{Name: "p2", KeyTypes: []string{"ecdsa-p384"},
				Validity: 2 * time.Hour}, ev("profile.update"))
			return err
		}, func(t *testing.T) {
			if p := must(s.GetProfile(ctx, "p2"))(t); p.Validity != time.Hour {
				t.Errorf("validity = %s, want 1h", p.Validity)
			}
		}},
		{"profile delete", func() error { return s.DeleteProfile(ctx, "p2", ev("profile.delete")) },
			kept(func() error { _, err := s.GetProfile(ctx, "p2"); return err })},
		{"device create", func() error {
			_, err := s.CreateDevice(ctx, store.Device{ID: "dev-new", Fleet: fleet, Profile: profile,
				Status: store.DevicePending}, ev("device.register"))
			return err
		}, gone(func() error { _, err := s.GetDevice(ctx, "dev-new"); return err })},
		{"device update", func() error {
			_, err := s.UpdateDevice(ctx, store.Device{ID: "dev-p", Fleet: fleet, Profile: profile,
				Status: store.DevicePending, Labels: map[string]string{"k": "changed"}}, ev("device.update"))
			return err
		}, func(t *testing.T) {
			if d := must(s.GetDevice(ctx, "dev-p"))(t); d.Labels["k"] != "kept" {
				t.Errorf("device = %+v, want label kept", d)
			}
		}},
		{"device delete", func() error { return s.DeleteDevice(ctx, "dev-p", ev("device.delete")) },
			kept(func() error { _, err := s.GetDevice(ctx, "dev-p"); return err })},
		{"policy create", func() error {
			_, err := s.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: "p3", CreatedBy: "test"}, ev("policy.create"))
			return err
		}, gone(func() error { _, err := s.GetPolicyVersion(ctx, pv2.Version+1); return err })},
		{"policy activate", func() error {
			_, err := s.ActivatePolicyVersion(ctx, pv2.Version, "test", ev("policy.activate"))
			return err
		}, func(t *testing.T) {
			if a := must(s.ActivePolicy(ctx))(t); a.Version != pv.Version {
				t.Errorf("active version = %d, want %d", a.Version, pv.Version)
			}
		}},
		{"user create", func() error {
			_, err := s.CreateAdminUser(ctx, store.AdminUser{Username: "u2", PasswordHash: "h", Role: "admin"},
				ev("admin_user.create"))
			return err
		}, gone(func() error { _, err := s.GetAdminUser(ctx, "u2"); return err })},
		{"user update", func() error {
			h, role := "h2", "admin"
			_, err := s.UpdateAdminUser(ctx, "u1", store.AdminUserUpdate{Role: &role, PasswordHash: &h, EndSessions: true},
				ev("admin_user.update"))
			return err
		}, func(t *testing.T) {
			if u := must(s.GetAdminUser(ctx, "u1"))(t); u.Role != "viewer" || u.PasswordHash != "h1" {
				t.Errorf("user = %+v, want role viewer and the old password", u)
			}
			if _, _, err := s.GetAdminSession(ctx, "sess-1"); err != nil {
				t.Errorf("session ended by the failed update: %v", err)
			}
		}},
		{"user delete", func() error { return s.DeleteAdminUser(ctx, "u1", ev("admin_user.delete")) },
			kept(func() error { _, err := s.GetAdminUser(ctx, "u1"); return err })},
		{"session login", func() error {
			_, err := s.CreateAdminSession(ctx, store.AdminSession{ID: "sess-2", UserID: u1.ID, CreatedAt: clk.Now(),
				ExpiresAt: clk.Now().Add(time.Hour), LastSeenAt: clk.Now()}, ev("session.login"))
			return err
		}, func(t *testing.T) {
			if _, _, err := s.GetAdminSession(ctx, "sess-2"); !fault.Is(err, fault.NotFound) {
				t.Errorf("session after the failed login: %v, want not found", err)
			}
			if u := must(s.GetAdminUser(ctx, "u1"))(t); u.LastLoginAt == nil || !u.LastLoginAt.Equal(base) {
				t.Errorf("last login = %v, want %v", u.LastLoginAt, base)
			}
		}},
		{"session logout", func() error { return s.DeleteAdminSession(ctx, "sess-1", ev("session.logout")) },
			kept(func() error { _, _, err := s.GetAdminSession(ctx, "sess-1"); return err })},
		{"token batch create", func() error {
			_, err := s.CreateTokenBatch(ctx, store.TokenBatch{ID: "b-new", Fleet: fleet, Profile: profile,
				ExpiresAt: base.Add(48 * time.Hour), CreatedBy: "test"}, []store.NewToken{{Hash: "t-new"}}, ev("token_batch.create"))
			return err
		}, gone(func() error { _, err := s.GetTokenBatch(ctx, "b-new"); return err })},
		{"admin token create", func() error {
			_, err := s.CreateAdminToken(ctx, store.AdminToken{Name: "n", Hash: "admin-new", Role: "admin"},
				ev("admin_token.create"))
			return err
		}, gone(func() error { _, err := s.GetAdminTokenByHash(ctx, "admin-new"); return err })},
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

// gone checks that get finds nothing: a create was rolled back.
func gone(get func() error) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		if err := get(); !fault.Is(err, fault.NotFound) {
			t.Errorf("get after the failed create: %v, want not found", err)
		}
	}
}

// kept checks that get still finds the object: a delete was rolled back.
func kept(get func() error) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		if err := get(); err != nil {
			t.Errorf("get after the failed delete: %v", err)
		}
	}
}
