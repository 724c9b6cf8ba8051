package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestRevocationJobs runs the bulk revocation cases on every backend.
func TestRevocationJobs(t *testing.T) {
	onEveryBackend(t, []backendCase{
		{"ChunkedResume", testBatchRevocationResume},
		{"ClaimRace", testRevocationJobClaimRace},
		{"FailedJobResumes", testRevocationJobFailResume},
		{"RevokeCertificateAudited", testRevokeCertificateAudited},
	})
}

// lot creates batch id with n tokens and enrolls a device with each of
// used of them; it returns the device ids.
func lot(t testing.TB, s *store.Store, id string, n, used int) []string {
	t.Helper()
	hashes := make([]string, n)
	for i := range hashes {
		hashes[i] = fmt.Sprintf("%s-tok-%03d", id, i)
	}
	batch(t, s, id, base.Add(24*time.Hour), hashes...)
	devs := make([]string, used)
	for i := range used {
		devs[i] = fmt.Sprintf("%s-dev-%03d", id, i)
		must(s.CompleteEnrollment(context.Background(), enrollment(hashes[i], devs[i], devs[i]+"-s", base)))(t)
	}
	return devs
}

func deviceAudit(jobID string) func(string, []string) store.AuditEvent {
	return func(dev string, serials []string) store.AuditEvent {
		return store.AuditEvent{Actor: "ops", Action: "device.revoke", ObjectType: "device", ObjectID: dev,
			Detail: fmt.Sprintf("job=%s certificates=%d", jobID, len(serials))}
	}
}

func finishAudit(j store.RevocationJob) store.AuditEvent {
	return store.AuditEvent{Actor: j.Actor, Action: "token_batch.revoke", ObjectType: "token_batch", ObjectID: j.Target, Detail: "done"}
}

func startJob(t testing.TB, s *store.Store, batchID string) store.RevocationJob {
	t.Helper()
	j, created, err := s.StartBatchRevocation(context.Background(), store.RevocationJob{Target: batchID, Reason: "keyCompromise",
		ReasonCode: 1, Note: "lot leaked", Actor: "ops", CreatedAt: base.Add(time.Minute)},
		&store.AuditEvent{Actor: "ops", Action: "token_batch.revoke", ObjectType: "token_batch", ObjectID: batchID, Detail: "started"})
	noErr(t, err)
	if !created || j.Status != store.JobRunning {
		t.Fatalf("start: created=%v job=%+v", created, j)
	}
	return j
}

// testBatchRevocationResume: a job runs one step on one replica, which then
// "crashes" holding the lease; once the lease runs out another replica (its
// own Store on the same database) takes over from the cursor. Every device
// of the batch is revoked exactly once, with exactly one audit event, and
// nothing else is touched.
func testBatchRevocationResume(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	s1 := open(t, dsn, nil)
	c := testclock.New(base)
	s1.SetClock(c.Now)
	must(s1.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s1.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
	devs := lot(t, s1, "lot", 26, 23)
	others := lot(t, s1, "other", 2, 2)
	// A suspended device of the lot is revoked too; a device revoked before
	// the job is processed but not changed or audited again.
	must(s1.TransitionDevice(ctx, devs[3], []store.DeviceStatus{store.DeviceActive}, store.DeviceSuspended, base, nil))(t)
	must(s1.RevokeDevice(ctx, devs[7], 5, base, &store.AuditEvent{Actor: "ops", Action: "device.revoke",
		ObjectType: "device", ObjectID: devs[7]}))(t)

	_, _, err := s1.StartBatchRevocation(ctx, store.RevocationJob{Target: "nope", CreatedAt: base}, nil)
	wantCode(t, err, fault.NotFound)

	job := startJob(t, s1, "lot")
	if job.Total != 23 || job.Done != 0 {
		t.Fatalf("new job = %+v, want total 23, done 0", job)
	}
	// The batch is revoked at once: its unused tokens cannot enroll.
	_, err = s1.CompleteEnrollment(ctx, enrollment("lot-tok-024", "late", "late-s", base.Add(2*time.Minute)))
	wantCode(t, err, fault.TokenRevoked)
	if b := must(s1.GetTokenBatch(ctx, "lot"))(t); b.RevokedAt == nil {
		t.Fatal("batch not marked revoked")
	}

	t0 := base.Add(2 * time.Minute)
	lease := 30 * time.Second
	claimed, ok, err := s1.ClaimRevocationJob(ctx, "replica-a", t0, t0.Add(lease))
	noErr(t, err)
	if !ok || claimed.ID != job.ID {
		t.Fatalf("claim = %+v, %v", claimed, ok)
	}
	step := func(s *store.Store, owner string, at time.Time) (store.Chunk, error) {
		return s.RevokeBatchChunk(ctx, store.ChunkRequest{JobID: job.ID, Owner: owner, Limit: 5, At: at,
			LeaseUntil: at.Add(lease), DeviceAudit: deviceAudit(job.ID), FinishAudit: finishAudit})
	}
	ch := must(step(s1, "replica-a", t0))(t)
	if len(ch.Devices) != 5 || ch.Job.Done != 5 || ch.Job.Cursor != devs[4] || len(ch.Serials) != 5 {
		t.Fatalf("first step = %+v", ch)
	}
	// replica-a dies here, holding the lease. Another replica starts.
	s2 := open(t, dsn, nil)
	s2.SetClock(c.Now)
	if _, ok, _ := s2.ClaimRevocationJob(ctx, "replica-b", t0.Add(time.Second), t0.Add(time.Second+lease)); ok {
		t.Fatal("replica-b claimed a job whose lease has not run out")
	}
	t1 := t0.Add(lease + time.Second)
	claimed, ok, err = s2.ClaimRevocationJob(ctx, "replica-b", t1, t1.Add(lease))
	noErr(t, err)
	if !ok || claimed.ID != job.ID || claimed.Cursor != devs[4] || claimed.Done != 5 {
		t.Fatalf("takeover claim = %+v, %v; want the job at its cursor", claimed, ok)
	}
	// The old owner waking up is refused and changes nothing.
	_, err = step(s1, "replica-a", t1)
	wantCode(t, err, fault.Conflict)

	revoked := map[string]int{}
	for _, d := range ch.Devices {
		revoked[d]++
	}
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("job did not finish")
		}
		ch = must(step(s2, "replica-b", t1.Add(time.Duration(i)*time.Second)))(t)
		for _, d := range ch.Devices {
			revoked[d]++
		}
		if ch.Job.Status == store.JobDone {
			break
		}
	}
	if ch.Job.Done != 23 || ch.Job.Total != 23 || ch.Job.Revoked != 22 || ch.Job.Cursor != devs[22] {
		t.Errorf("finished job = %+v; want done 23 of 23, 22 changed", ch.Job)
	}
	// A step after the end is a no-op.
	after := must(step(s2, "replica-b", t1.Add(time.Hour)))(t)
	if len(after.Devices) != 0 || after.Job.Status != store.JobDone {
		t.Errorf("step after done = %+v", after)
	}

	for i, d := range devs {
		dev := must(s2.GetDevice(ctx, d))(t)
		if dev.Status != store.DeviceRevoked {
			t.Errorf("%s is %s, want revoked", d, dev.Status)
		}
		cert := must(s2.GetCertificate(ctx, d+"-s"))(t)
		wantReason := 1
		if i == 7 {
			wantReason = 5 // revoked before the job: first revocation kept
		}
		if cert.Status != store.CertRevoked || cert.RevocationReason != wantReason {
			t.Errorf("%s certificate = %s reason %d, want revoked reason %d", d, cert.Status, cert.RevocationReason, wantReason)
		}
		wantRevoked, wantEvents := 1, 1
		if i == 7 {
			wantRevoked = 0
		}
		if revoked[d] != wantRevoked {
			t.Errorf("%s revoked %d times by the job, want %d", d, revoked[d], wantRevoked)
		}
		ev := must(s2.ListAudit(ctx, store.AuditFilter{ObjectType: "device", ObjectID: d}))(t)
		n := 0
		for _, e := range ev {
			if e.Action == "device.revoke" {
				n++
			}
		}
		if n != wantEvents {
			t.Errorf("%s has %d device.revoke audit events, want %d: %+v", d, n, wantEvents, ev)
		}
	}
	for _, d := range others {
		if dev := must(s2.GetDevice(ctx, d))(t); dev.Status != store.DeviceActive {
			t.Errorf("device %s of another batch is %s", d, dev.Status)
		}
	}
	if ev := must(s2.ListAudit(ctx, store.AuditFilter{ObjectType: "token_batch", ObjectID: "lot"}))(t); len(ev) != 2 {
		t.Errorf("batch audit events = %+v, want start and finish", ev)
	}
	// Revoking the batch again returns the finished job.
	again, created, err := s2.StartBatchRevocation(ctx, store.RevocationJob{Target: "lot", CreatedAt: t1.Add(time.Hour)}, nil)
	noErr(t, err)
	if created || again.ID != job.ID || again.Status != store.JobDone {
		t.Errorf("second start = %+v created=%v, want the done job", again, created)
	}
	// Nothing left to claim.
	if _, ok, _ := s2.ClaimRevocationJob(ctx, "replica-c", t1.Add(time.Hour), t1.Add(2*time.Hour)); ok {
		t.Error("a done job was claimed")
	}
	jobs := must(s2.ListRevocationJobs(ctx, 10))(t)
	if len(jobs) != 1 || jobs[0].ID != job.ID {
		t.Errorf("ListRevocationJobs = %+v", jobs)
	}
	_, err = s2.GetRevocationJob(ctx, "missing")
	wantCode(t, err, fault.NotFound)
}

// testRevocationJobClaimRace: workers on two replicas claim one expired job
// at once; exactly one gets it.
func testRevocationJobClaimRace(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	s1 := open(t, dsn, nil)
	s2 := open(t, dsn, nil)
	must(s1.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s1.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
	lot(t, s1, "lot", 3, 3)
	job := startJob(t, s1, "lot")
	warm(t, s1)
	warm(t, s2)

	now := base.Add(time.Hour)
	var (
		mu   sync.Mutex
		wins []string
		wg   sync.WaitGroup
	)
	for i := range 16 {
		s := []*store.Store{s1, s2}[i%2]
		owner := fmt.Sprintf("worker-%d", i)
		wg.Go(func() {
			j, ok, err := s.ClaimRevocationJob(ctx, owner, now, now.Add(time.Minute))
			if err != nil {
				t.Errorf("%s: %v", owner, err)
				return
			}
			if ok {
				if j.ID != job.ID || j.LeaseOwner != owner {
					t.Errorf("%s claimed %+v", owner, j)
				}
				mu.Lock()
				wins = append(wins, owner)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("claim winners = %v, want exactly one", wins)
	}
	// Concurrent steps by the winner and a loser: only the winner's counts.
	var steps [2]store.Chunk
	var errs [2]error
	for i, owner := range []string{wins[0], "worker-loser"} {
		s := []*store.Store{s1, s2}[i]
		wg.Go(func() {
			steps[i], errs[i] = s.RevokeBatchChunk(ctx, store.ChunkRequest{JobID: job.ID, Owner: owner, Limit: 10,
				At: now, LeaseUntil: now.Add(time.Minute), DeviceAudit: deviceAudit(job.ID), FinishAudit: finishAudit})
		})
	}
	wg.Wait()
	noErr(t, errs[0])
	// The loser is refused, or (when it ran after the winner finished) finds
	// the job done; either way it revoked nothing.
	if errs[1] != nil {
		wantCode(t, errs[1], fault.Conflict)
	} else if len(steps[1].Devices) != 0 || steps[1].Job.Status != store.JobDone {
		t.Errorf("loser's step = %+v", steps[1])
	}
	if steps[0].Job.Status != store.JobDone || len(steps[0].Devices) != 3 {
		t.Errorf("winner's step = %+v", steps[0])
	}
}

// testRevocationJobFailResume: a failed job keeps its cursor; starting the
// batch's revocation again sets it running from there.
func testRevocationJobFailResume(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	devs := lot(t, s, "lot", 4, 4)
	job := startJob(t, s, "lot")
	now := base.Add(time.Hour)
	if _, ok, err := s.ClaimRevocationJob(ctx, "a", now, now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	must(s.RevokeBatchChunk(ctx, store.ChunkRequest{JobID: job.ID, Owner: "a", Limit: 2, At: now,
		LeaseUntil: now.Add(time.Minute), DeviceAudit: deviceAudit(job.ID)}))(t)
	noErr(t, s.FailRevocationJob(ctx, job.ID, "a", "database went away", now))
	j := must(s.GetRevocationJob(ctx, job.ID))(t)
	if j.Status != store.JobFailed || j.Error != "database went away" || j.Cursor != devs[1] {
		t.Fatalf("failed job = %+v", j)
	}
	again, created, err := s.StartBatchRevocation(ctx, store.RevocationJob{Target: "lot", CreatedAt: now}, nil)
	noErr(t, err)
	if created || again.ID != job.ID || again.Status != store.JobRunning || again.Cursor != devs[1] || again.Error != "" {
		t.Fatalf("restarted job = %+v created=%v", again, created)
	}
	// Failed leases were cleared: another replica claims it at once.
	j, ok, err := s.ClaimRevocationJob(ctx, "b", now, now.Add(time.Minute))
	noErr(t, err)
	if !ok || j.ID != job.ID {
		t.Fatalf("claim after restart = %+v, %v", j, ok)
	}
	ch := must(s.RevokeBatchChunk(ctx, store.ChunkRequest{JobID: job.ID, Owner: "b", Limit: 5, At: now,
		LeaseUntil: now.Add(time.Minute), DeviceAudit: deviceAudit(job.ID)}))(t)
	if ch.Job.Status != store.JobDone || len(ch.Devices) != 2 || ch.Devices[0] != devs[2] {
		t.Errorf("resumed step = %+v", ch)
	}
}

// testRevokeCertificateAudited: the revocation and its audit event commit
// together; an unknown serial writes neither.
func testRevokeCertificateAudited(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	audit := func(c store.Certificate) store.AuditEvent {
		return store.AuditEvent{Actor: "ops", Action: "certificate.revoke", ObjectType: "certificate",
			ObjectID: c.Serial, Detail: "device=" + c.DeviceID}
	}
	at := base.Add(time.Minute)
	c := must(s.RevokeCertificateAudited(ctx, "s1", 1, at, audit))(t)
	if c.Status != store.CertRevoked || c.RevocationReason != 1 || c.DeviceID != "dev-1" {
		t.Errorf("revoked = %+v", c)
	}
	wantTimePtr(t, "RevokedAt", c.RevokedAt, at)
	c = must(s.RevokeCertificateAudited(ctx, "s1", 4, at.Add(time.Hour), audit))(t)
	if c.RevocationReason != 1 {
		t.Errorf("re-revoked = %+v, want the first reason kept", c)
	}
	ev := must(s.ListAudit(ctx, store.AuditFilter{ObjectType: "certificate", ObjectID: "s1"}))(t)
	if len(ev) != 2 || ev[0].Detail != "device=dev-1" {
		t.Errorf("audit = %+v, want two events naming the device", ev)
	}
	_, err := s.RevokeCertificateAudited(ctx, "nope", 1, at, audit)
	wantCode(t, err, fault.NotFound)
	if ev := must(s.ListAudit(ctx, store.AuditFilter{ObjectType: "certificate", ObjectID: "nope"}))(t); len(ev) != 0 {
		t.Errorf("failed revocation left audit events %+v", ev)
	}
}
