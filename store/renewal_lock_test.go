package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestRenewalWaitsForDeviceChange holds a revocation or suspension open in
// another connection, as RevokeDevice and TransitionDevice do after their
// first statement (the device row updated, the transaction not committed),
// and renews meanwhile. The renewal must wait for that transaction and then
// be refused: committed beside it, it left a revoked or suspended device
// with a certificate issued after the change (PostgreSQL read the device
// without a lock).
func TestRenewalWaitsForDeviceChange(t *testing.T) {
	for _, backend := range testdb.All() {
		for _, to := range []store.DeviceStatus{store.DeviceRevoked, store.DeviceSuspended} {
			t.Run(backend+"/"+string(to), func(t *testing.T) {
				ctx := context.Background()
				dsn := testdb.DSN(t, backend)
				s := open(t, dsn, nil)
				clk := testclock.New(base)
				s.SetClock(clk.Now)
				must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
				must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
					Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
				batch(t, s, "b", base.Add(time.Hour), "t1")
				must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)

				driver, src := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_txlock=immediate"
				if store.IsPostgres(dsn) {
					driver, src = "pgx", dsn
				}
				raw, err := sql.Open(driver, src)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				tx, err := raw.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback() }()
				q := "UPDATE devices SET status = $1 WHERE id = 'dev-1'"
				if driver == "sqlite" {
					q = "UPDATE devices SET status = ? WHERE id = 'dev-1'"
				}
				if _, err := tx.ExecContext(ctx, q, string(to)); err != nil {
					t.Fatal(err)
				}

				done := make(chan error, 1)
				go func() {
					done <- second(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-1", OldSerial: "s1",
						Cert: certificate("dev-1", "s2", base.Add(time.Minute))}))
				}()
				select {
				case err := <-done:
					t.Fatalf("renewal finished (%v) while the device's %s was uncommitted", err, to)
				case <-time.After(300 * time.Millisecond):
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					wantCode(t, err, fault.DeviceNotActive)
				case <-time.After(15 * time.Second):
					t.Fatal("renewal still waiting 15s after the change committed")
				}
				wantCode(t, second(s.GetCertificate(ctx, "s2")), fault.NotFound)
			})
		}
	}
}

// TestClaimRevokeRace races the enrollment that claims a pre-registered
// pending device against the revocation of that device, 40 devices at
// once. Both start by writing the device row, so they are serialised there:
// either the revocation wins and the claim is refused, or the claim commits
// first and the revocation revokes the new certificate. A revoked device
// never ends with a certificate that is not revoked.
func TestClaimRevokeRace(t *testing.T) {
	const n = 40
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s, _ := seeded(t, backend)
			toks := make([]store.NewToken, n)
			for i := range toks {
				id := fmt.Sprintf("pending-%02d", i)
				toks[i] = store.NewToken{Hash: "h-" + id, DeviceID: id}
				must(s.CreateDevice(ctx, store.Device{ID: id, Fleet: fleet, Profile: profile, Status: store.DevicePending}, nil))(t)
			}
			must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "b", Fleet: fleet, Profile: profile, ExpiresAt: base.Add(time.Hour),
				CreatedBy: "test"}, toks, nil))(t)
			warm(t, s)
			start := make(chan struct{})
			claimed := make([]error, n)
			var wg sync.WaitGroup
			for i, tok := range toks {
				wg.Go(func() {
					<-start
					e := enrollment(tok.Hash, tok.DeviceID, tok.DeviceID+"-s1", base)
					e.ClaimPending = true
					_, claimed[i] = s.CompleteEnrollment(ctx, e)
				})
				wg.Go(func() {
					<-start
					if _, err := s.RevokeDevice(ctx, tok.DeviceID, 1, base, nil); err != nil {
						t.Errorf("revoke %s: %v", tok.DeviceID, err)
					}
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for i, tok := range toks {
				if claimed[i] == nil {
					won++
				} else if c := fault.CodeOf(claimed[i]); c != fault.AlreadyExists {
					t.Errorf("claim %s: %v (code %q)", tok.DeviceID, claimed[i], c)
				}
				d := must(s.GetDevice(ctx, tok.DeviceID))(t)
				if d.Status != store.DeviceRevoked {
					t.Errorf("%s is %s after its revocation", d.ID, d.Status)
				}
				for _, c := range must(s.ListCertificates(ctx, tok.DeviceID))(t) {
					if c.Status != store.CertRevoked {
						t.Errorf("revoked device %s holds %s certificate %s", d.ID, c.Status, c.Serial)
					}
				}
			}
			t.Logf("%d of %d claims committed before their revocation", won, n)
		})
	}
}
