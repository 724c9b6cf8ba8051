package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSupersededGrace: a renewal on a profile with grace 0 revokes the old
// certificate with reason superseded in its own transaction; with a grace,
// the old certificate stays superseded (good) until the grace ends, and the
// sweep then revokes it, once, with its audit event, even when several
// replicas sweep at once. Revoked, it is listed for the CRL.
func TestSupersededGrace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s, clk := seeded(t, backend)
			must(s.CreateProfile(ctx, store.Profile{Name: "at-once", KeyTypes: []string{"ecdsa-p256"},
				Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour, SupersededGrace: new(time.Duration(0))}, nil))(t)
			const n = 20
			toks := []string{"t-now"}
			for i := range n {
				toks = append(toks, "t"+string(rune('a'+i)))
			}
			batch(t, s, "b", base.Add(time.Hour), toks...)
			e := enrollment("t-now", "now-1", "now-s1", base)
			e.Device.Profile = "at-once"
			must(s.CompleteEnrollment(ctx, e))(t)
			for i, tok := range toks[1:] {
				id := "dev-" + tok
				must(s.CompleteEnrollment(ctx, enrollment(tok, id, id+"-s1", base.Add(time.Duration(i)*time.Second))))(t)
			}

			renewedAt := base.Add(20 * 24 * time.Hour)
			clk.Set(renewedAt)
			old := must(s.RecordRenewal(ctx, store.Renewal{DeviceID: "now-1", OldSerial: "now-s1", Cert: certificate("now-1", "now-s2", renewedAt)}))(t)
			if old.Status != store.CertRevoked || old.RevocationReason != store.ReasonSuperseded || old.RevokedAt == nil || !old.RevokedAt.Equal(renewedAt) {
				t.Fatalf("grace 0: old certificate %+v, want revoked superseded at the renewal", old)
			}
			if !onCRLList(t, s, "now-s1") {
				t.Fatal("grace 0: old certificate is not listed for the CRL")
			}

			for _, tok := range toks[1:] {
				id := "dev-" + tok
				old := must(s.RecordRenewal(ctx, store.Renewal{DeviceID: id, OldSerial: id + "-s1", Cert: certificate(id, id+"-s2", renewedAt)}))(t)
				if old.Status != store.CertSuperseded || old.RevokeAfter == nil || !old.RevokeAfter.Equal(renewedAt.Add(store.DefaultSupersededGrace)) {
					t.Fatalf("default grace: old certificate %+v, want superseded until +1h", old)
				}
			}
			auditFor := func(c store.Certificate) store.AuditEvent {
				return store.AuditEvent{Actor: "system", Action: "certificate.revoke", ObjectType: "certificate", ObjectID: c.Serial}
			}
			if got := must(s.RevokeSupersededDue(ctx, renewedAt.Add(time.Hour-time.Millisecond), 0, auditFor))(t); len(got) != 0 {
				t.Fatalf("before the grace ended the sweep revoked %d", len(got))
			}
			if onCRLList(t, s, "dev-ta-s1") {
				t.Fatal("superseded certificate listed for the CRL within its grace")
			}

			// Replicas sweep at once, in small steps: each certificate is
			// revoked and audited exactly once.
			due := renewedAt.Add(time.Hour)
			var (
				mu    sync.Mutex
				swept = map[string]int{}
				wg    sync.WaitGroup
			)
			for range 6 {
				wg.Go(func() {
					for {
						got, err := s.RevokeSupersededDue(ctx, due, 3, auditFor)
						if err != nil {
							t.Error(err)
							return
						}
						if len(got) == 0 {
							return
						}
						mu.Lock()
						for _, c := range got {
							swept[c.Serial]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(swept) != n {
				t.Errorf("swept %d certificates, want %d", len(swept), n)
			}
			for serial, k := range swept {
				if k != 1 {
					t.Errorf("%s swept %d times", serial, k)
				}
				c := must(s.GetCertificate(ctx, serial))(t)
				if c.Status != store.CertRevoked || c.RevocationReason != store.ReasonSuperseded || c.RevokedAt == nil || !c.RevokedAt.Equal(due) {
					t.Errorf("%s after the sweep: %+v", serial, c)
				}
				if !onCRLList(t, s, serial) {
					t.Errorf("%s not listed for the CRL", serial)
				}
			}
			events := must(s.ListAudit(ctx, store.AuditFilter{ObjectType: "certificate", Limit: 1000}))(t)
			if len(events) != n {
				t.Errorf("%d audit events, want %d", len(events), n)
			}
			// The renewed certificates are untouched.
			if c := must(s.GetCertificate(ctx, "dev-ta-s2"))(t); c.Status != store.CertActive {
				t.Errorf("renewed certificate %+v", c)
			}
		})
	}
}

func onCRLList(t *testing.T, s *store.Store, serial string) bool {
	t.Helper()
	for _, r := range must(s.RevokedCertificates(context.Background(), base))(t) {
		if r.Serial == serial {
			return r.Reason == store.ReasonSuperseded
		}
	}
	return false
}
