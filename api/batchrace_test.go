package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// TestEnrollBatchRevokeRace: an enrollment in flight when its token's batch
// is revoked either is refused or ends up revoked by the batch's job. The
// job finds a batch's devices by their used tokens; on PostgreSQL an
// enrollment whose token UPDATE had passed the batch check, but which had
// not committed yet (here: waiting for the pending device's row, as it
// does behind any lock), was invisible to the job, which finished without
// it: the device of a revoked batch kept an active certificate. The test
// holds the device row so that the enrollment stalls right after consuming
// its token, revokes the batch meanwhile, and then lets the enrollment go.
// SQLite serialises writers, so there it checks the same outcome without
// the stall.
func TestEnrollBatchRevokeRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			s := newStack(t, dsn, withBatchRevoke(10))
			b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "device_ids": []string{"lot-dev"}, "ttl": "1h"})
			s.call(t, http.MethodPost, "/api/v1/devices", s.admin, map[string]any{"id": "lot-dev", "fleet": "default",
				"profile": "default"}, http.StatusCreated, nil)

			var hold *sql.Tx
			ctx := context.Background()
			if backend == "postgres" {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if hold, err = db.BeginTx(ctx, nil); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = hold.Rollback() }()
				if _, err := hold.ExecContext(ctx, `SELECT id FROM devices WHERE id = 'lot-dev' FOR UPDATE`); err != nil {
					t.Fatal(err)
				}
			}

			var wg sync.WaitGroup
			var enrolled reply
			body := mustJSON(t, apitypes.EnrollRequest{Token: b.Tokens[0].Token, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
			wg.Add(1)
			go func() {
				defer wg.Done()
				enrolled = s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json",
					body: bytes.NewReader(body)})
			}()
			if hold != nil {
				waitForLockWait(t, hold)
			}
			var job apitypes.RevocationJob
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.call(t, http.MethodPost, "/api/v1/token-batches/"+b.Batch.ID+"/revoke", s.admin,
					map[string]any{"reason": "keyCompromise"}, http.StatusAccepted, &job)
			}()
			if hold != nil {
				// Time for the job to run to its end, as it did before.
				time.Sleep(time.Second)
				if err := hold.Rollback(); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			if job.ID == "" {
				t.Fatal("no revocation job")
			}
			deadline := time.Now().Add(10 * time.Second)
			for job.Status != "done" {
				if time.Now().After(deadline) {
					t.Fatalf("job not done: %+v", job)
				}
				time.Sleep(20 * time.Millisecond)
				s.call(t, http.MethodGet, "/api/v1/revocation-jobs/"+job.ID, s.viewer, nil, http.StatusOK, &job)
			}
			if enrolled.status != http.StatusCreated {
				// Refused because the batch was revoked first, and for
				// nothing else: not a 5xx, not token_used.
				wantError(t, enrolled, http.StatusForbidden, fault.TokenRevoked)
				var certs apitypes.CertificateList
				s.call(t, http.MethodGet, "/api/v1/devices/lot-dev/certificates", s.viewer, nil, http.StatusOK, &certs)
				// A certificate signed for it before the revocation won
				// may be listed, as discarded and revoked: never usable.
				for _, c := range certs.Certificates {
					if !c.Discarded || c.Status != "revoked" {
						t.Fatalf("refused enrollment left certificate %+v", c)
					}
				}
				return
			}
			var dev apitypes.Device
			s.call(t, http.MethodGet, "/api/v1/devices/lot-dev", s.viewer, nil, http.StatusOK, &dev)
			var certs apitypes.CertificateList
			s.call(t, http.MethodGet, "/api/v1/devices/lot-dev/certificates", s.viewer, nil, http.StatusOK, &certs)
			if cs := certs.Certificates; dev.Status != "revoked" || len(cs) != 1 || cs[0].Status != "revoked" {
				t.Fatalf("enrolled while its batch was revoked: device %v, certificates %+v (job %s %d/%d)", dev.Status,
					cs, job.Status, job.Revoked, job.Total)
			}
		})
	}
}

// waitForLockWait returns once another session of tx's database waits for a lock.
func waitForLockWait(t *testing.T, tx *sql.Tx) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the enrollment never waited for the held row")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
