package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// withBatchRevoke wires the revocation service with its background job
// runner, as the server binary does, in steps of chunk devices.
func withBatchRevoke(chunk int) stackOpt {
	return func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, _ *audit.Recorder, cfg *api.Config) {
			syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: authz.New(authz.Config{})})
			if err != nil {
				t.Fatal(err)
			}
			rev, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: syncer, ChunkSize: chunk, PollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = rev.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			cfg.Revoke = rev
		}
	}
}

// TestRevokeBatch: a compromised lot is revoked through the API: 202 with
// the job, progress to done, every device it enrolled revoked, its unused
// tokens refused; bad input and viewers are turned away.
func TestRevokeBatch(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), withBatchRevoke(2))
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 6, "ttl": "1h"})
	other := s.token(t)
	var devs []string
	for _, tok := range b.Tokens[:5] {
		enr, _, _ := s.enrollOK(t, tok.Token)
		devs = append(devs, enr.DeviceID)
	}
	bystander, _, _ := s.enrollOK(t, other)
	path := "/api/v1/token-batches/" + b.Batch.ID + "/revoke"

	for _, c := range []struct {
		name, path, bearer string
		body               map[string]any
		status             int
		code               fault.Code
	}{
		{"viewer", path, s.viewer, map[string]any{"reason": "keyCompromise"}, 403, "permission_denied"},
		{"no token", path, "", map[string]any{"reason": "keyCompromise"}, 401, "unauthenticated"},
		{"bad reason", path, s.admin, map[string]any{"reason": "stolen"}, 400, "invalid_argument"},
		{"unknown field", path, s.admin, map[string]any{"reasons": "keyCompromise"}, 400, "invalid_argument"},
		{"unknown batch", "/api/v1/token-batches/nope/revoke", s.admin, map[string]any{"reason": "keyCompromise"}, 404, "not_found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, s.call(t, "POST", c.path, c.bearer, c.body, c.status, nil), c.status, c.code)
		})
	}

	var job apitypes.RevocationJob
	r := s.call(t, "POST", path, s.admin, map[string]any{"reason": "keyCompromise", "note": "lot leaked"}, http.StatusAccepted, &job)
	if job.ID == "" || job.BatchID != b.Batch.ID || job.Kind != "batch" || job.Reason != "keyCompromise" || job.Total != 5 {
		t.Fatalf("job = %+v", job)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/revocation-jobs/"+job.ID {
		t.Errorf("Location = %q", loc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for job.Status == "running" {
		if time.Now().After(deadline) {
			t.Fatalf("job still running: %+v", job)
		}
		time.Sleep(20 * time.Millisecond)
		s.call(t, "GET", "/api/v1/revocation-jobs/"+job.ID, s.viewer, nil, 200, &job)
		if job.Done > job.Total {
			t.Fatalf("progress past total: %+v", job)
		}
	}
	if job.Status != "done" || job.Done != 5 || job.Revoked != 5 || job.Error != "" {
		t.Fatalf("finished job = %+v", job)
	}
	for _, d := range devs {
		var dev apitypes.Device
		s.call(t, "GET", "/api/v1/devices/"+d, s.viewer, nil, 200, &dev)
		if dev.Status != "revoked" {
			t.Errorf("device %s is %v, want revoked", d, dev.Status)
		}
	}
	var dev apitypes.Device
	s.call(t, "GET", "/api/v1/devices/"+bystander.DeviceID, s.viewer, nil, 200, &dev)
	if dev.Status != "active" {
		t.Errorf("device of another batch is %v", dev.Status)
	}
	// The lot's unused token no longer enrolls.
	key := testpki.Key(t, "P-256")
	wantError(t, s.call(t, "POST", "/api/v1/enroll", "", apitypes.EnrollRequest{Token: b.Tokens[5].Token, CSR: testpki.CSRPEM(t, key)},
		403, nil), 403, "token_revoked")

	// Again: the same, finished job, not a second one.
	var again apitypes.RevocationJob
	s.call(t, "POST", path, s.admin, map[string]any{"reason": "keyCompromise"}, http.StatusOK, &again)
	if again.ID != job.ID || again.Status != "done" {
		t.Errorf("second revoke = %+v", again)
	}
	var list apitypes.RevocationJobList
	s.call(t, "GET", "/api/v1/revocation-jobs", s.viewer, nil, 200, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != job.ID {
		t.Errorf("jobs = %+v", list.Jobs)
	}
	wantError(t, s.call(t, "GET", "/api/v1/revocation-jobs/nope", s.viewer, nil, 404, nil), 404, "not_found")
	wantError(t, s.call(t, "GET", "/api/v1/revocation-jobs?limit=x", s.viewer, nil, 400, nil), 400, "invalid_argument")

	// One audit event per device, plus the batch's start and finish.
	var events apitypes.AuditEventList
	s.call(t, "GET", "/api/v1/audit?object_type=token_batch&object_id="+b.Batch.ID, s.viewer, nil, 200, &events)
	revokes := 0
	for _, e := range events.Events {
		if e.Action == "token_batch.revoke" {
			revokes++
		}
	}
	if revokes != 2 {
		t.Errorf("batch audit = %+v, want a start and a finish event", events.Events)
	}
	for _, d := range devs {
		s.call(t, "GET", "/api/v1/audit?object_type=device&object_id="+d, s.viewer, nil, 200, &events)
		n := 0
		for _, e := range events.Events {
			if e.Action == "device.revoke" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("device %s: %d device.revoke events, want 1", d, n)
		}
	}
}
