package revoke_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

var errDown = fault.New(fault.Unavailable, "database restarting")

// failingFixture is fixture behind a teststore wrapper, with a service whose
// store and job store both go through it.
func failingFixture(t *testing.T, backend string, n int, e *effects) (*teststore.Store, []string, *revoke.Service) {
	t.Helper()
	st, devs := fixture(t, testdb.DSN(t, backend), n)
	db := teststore.New(st)
	s, err := revoke.New(revoke.Config{Store: db, Jobs: db, Core: e, CRL: e, Sessions: e, ChunkSize: 10,
		Lease: time.Minute, Owner: "replica-a"})
	if err != nil {
		t.Fatal(err)
	}
	return db, devs, s
}

// startJob revokes batch "lot" and claims its job as replica-a, as Run
// would; the test then runs it with RunJob.
func startJob(t *testing.T, db *teststore.Store, s *revoke.Service) store.RevocationJob {
	t.Helper()
	ctx := context.Background()
	job, _, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "keyCompromise"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claimed, ok, err := db.Real().ClaimRevocationJob(ctx, "replica-a", now, now.Add(time.Minute))
	if err != nil || !ok || claimed.ID != job.ID {
		t.Fatalf("claim: %+v %v %v, want job %s", claimed, ok, err, job.ID)
	}
	return claimed
}

// checkAllRevokedOnce: every device is revoked, kicked once and has one
// device.revoke audit event — none lost, none done twice.
func checkAllRevokedOnce(t *testing.T, db *teststore.Store, devs []string, e *effects) {
	t.Helper()
	ctx := context.Background()
	kicked := e.kicks()
	slices.Sort(kicked)
	if !slices.Equal(kicked, devs) {
		t.Errorf("kicked %d devices (%v), want each of %d once", len(kicked), kicked, len(devs))
	}
	for _, id := range devs {
		d, err := db.Real().GetDevice(ctx, id)
		if err != nil || d.Status != store.DeviceRevoked {
			t.Fatalf("%s: %+v %v, want revoked", id, d, err)
		}
		ev, err := db.Real().ListAudit(ctx, store.AuditFilter{ObjectType: "device", ObjectID: id})
		if err != nil || len(ev) != 1 || ev[0].Action != "device.revoke" {
			t.Fatalf("%s audit = %+v, %v; want one device.revoke", id, ev, err)
		}
	}
}

// TestBatchStepFailsOnce: the store refuses one step in the middle of a
// job; the replica retries that step itself (the job neither stops nor waits
// for its lease to run out) and finishes with every device revoked once.
func TestBatchStepFailsOnce(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := &effects{}
			db, devs, s := failingFixture(t, backend, 25, e)
			job := startJob(t, db, s)
			db.FailNth("RevokeBatchChunk", 2, errDown)
			if err := s.RunJob(context.Background(), job); err != nil {
				t.Fatalf("RunJob: %v, want the failed step retried", err)
			}
			j, err := db.Real().GetRevocationJob(context.Background(), job.ID)
			if err != nil || j.Status != store.JobDone || j.Done != 25 || j.Revoked != 25 || j.Error != "" {
				t.Fatalf("job = %+v, %v", j, err)
			}
			// Three steps (10, 10, 5) and the refused attempt at the second.
			if n := db.Calls("RevokeBatchChunk"); n != 4 {
				t.Errorf("%d step calls, want 4", n)
			}
			checkAllRevokedOnce(t, db, devs, e)
		})
	}
}

// TestBatchStoreDown: while the store refuses every step the job is marked
// failed after five attempts, with the reason, having revoked nothing;
// revoking the batch again resumes that job, which then revokes every
// device once.
func TestBatchStoreDown(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := &effects{}
			db, devs, s := failingFixture(t, backend, 25, e)
			job := startJob(t, db, s)
			db.FailOn("RevokeBatchChunk", errDown)
			if err := s.RunJob(ctx, job); !fault.Is(err, fault.Unavailable) {
				t.Fatalf("RunJob: %v, want the store's error", err)
			}
			if n := db.Calls("RevokeBatchChunk"); n != 5 {
				t.Errorf("%d step attempts, want 5 before giving up", n)
			}
			j, err := db.Real().GetRevocationJob(ctx, job.ID)
			if err != nil || j.Status != store.JobFailed || j.Done != 0 || !strings.Contains(j.Error, "database restarting") {
				t.Fatalf("job = %+v, %v; want failed with the store's message", j, err)
			}
			if len(e.kicks()) != 0 {
				t.Fatalf("kicked %v while nothing was revoked", e.kicks())
			}

			db.Reset()
			again, created, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "keyCompromise"})
			if err != nil || created || again.ID != job.ID || again.Status != store.JobRunning {
				t.Fatalf("RevokeBatch again = %+v created=%v %v; want the failed job running again", again, created, err)
			}
			now := time.Now()
			claimed, ok, err := db.Real().ClaimRevocationJob(ctx, "replica-a", now, now.Add(time.Minute))
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			if err := s.RunJob(ctx, claimed); err != nil {
				t.Fatal(err)
			}
			if j, err := db.Real().GetRevocationJob(ctx, job.ID); err != nil || j.Status != store.JobDone || j.Revoked != 25 {
				t.Fatalf("resumed job = %+v, %v", j, err)
			}
			checkAllRevokedOnce(t, db, devs, e)
		})
	}
}

// TestFailedChangeIsNoWarning: when the store refuses a revoke, suspend or
// certificate revocation, the call fails with the store's code — not a
// *revoke.Lagging the API would answer 200 to — and no follow-up runs: no
// core refresh, kick or CRL for a change that did not happen.
func TestFailedChangeIsNoWarning(t *testing.T) {
	for _, tc := range []struct {
		method string
		call   func(s *revoke.Service, dev string) error
	}{
		{"RevokeDevice", func(s *revoke.Service, dev string) error {
			_, err := s.RevokeDevice(context.Background(), dev, revoke.Request{Actor: "ops"})
			return err
		}},
		{"TransitionDevice", func(s *revoke.Service, dev string) error {
			_, err := s.Suspend(context.Background(), dev, revoke.Request{Actor: "ops"})
			return err
		}},
		{"RevokeCertificateAudited", func(s *revoke.Service, dev string) error {
			_, err := s.RevokeCertificate(context.Background(), "s"+strings.TrimPrefix(dev, "dev-"), revoke.Request{Actor: "ops"})
			return err
		}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			st, devs := fixture(t, testdb.SQLite(t), 1)
			db := teststore.New(st)
			o := &ordered{}
			s, err := revoke.New(revoke.Config{Store: db, Jobs: db, Core: o, CRL: o, Sessions: o})
			if err != nil {
				t.Fatal(err)
			}
			db.FailOn(tc.method, errDown)
			err = tc.call(s, devs[0])
			warnings, rest := revoke.Warnings(err)
			if warnings != nil || !fault.Is(rest, fault.Unavailable) {
				t.Fatalf("%s refused: warnings %q, error %v; want the store's unavailable error", tc.method, warnings, rest)
			}
			if len(o.ran) != 0 {
				t.Errorf("follow-ups %v ran after a failed change", o.ran)
			}
			if d, err := st.GetDevice(context.Background(), devs[0]); err != nil || d.Status != store.DeviceActive {
				t.Fatalf("device after a refused change: %+v %v", d, err)
			}
			// The same call goes through once the store is back.
			db.Reset()
			if err := tc.call(s, devs[0]); err != nil {
				t.Fatalf("%s after the store recovered: %v", tc.method, err)
			}
		})
	}
}
