package revoke

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// JobRecords starts and shows bulk revocation jobs.
type JobRecords interface {
	// StartBatchRevocation revokes the batch and records its job, or
	// returns the batch's existing job (a failed one set running again).
	StartBatchRevocation(ctx context.Context, j store.RevocationJob, audit *store.AuditEvent) (store.RevocationJob, bool, error)
	GetRevocationJob(ctx context.Context, id string) (store.RevocationJob, error)
	ListRevocationJobs(ctx context.Context, limit int) ([]store.RevocationJob, error)
}

// JobQueue hands running jobs to replicas under a lease and runs their steps.
type JobQueue interface {
	ClaimRevocationJob(ctx context.Context, owner string, now, until time.Time) (store.RevocationJob, bool, error)
	RevokeBatchChunk(ctx context.Context, req store.ChunkRequest) (store.Chunk, error)
	FailRevocationJob(ctx context.Context, id, owner, msg string, at time.Time) error
	ReleaseRevocationJob(ctx context.Context, id, owner string) error
}

// JobStore is what bulk revocation needs from the database.
type JobStore interface {
	JobRecords
	JobQueue
}

// maxStepFailures is how many steps in a row may fail (database away) before
// a job is marked failed; it keeps its cursor and resumes when started again.
const maxStepFailures = 5

// RevokeBatch revokes a token batch — its unused tokens stop working at
// once — and starts the job that revokes every device enrolled with one of
// its tokens, with their certificates. The job runs in the background (Run,
// on whichever replica claims it); this returns it as started. Revoking a
// batch again returns its existing job, resuming it if it failed, so a
// retried request never revokes a device twice. created reports whether a
// new job was started.
func (s *Service) RevokeBatch(ctx context.Context, batchID string, req Request) (job store.RevocationJob, created bool, err error) {
	code, err := ReasonCode(req.Reason)
	if err != nil {
		return store.RevocationJob{}, false, err
	}
	if err := checkNote(req.Note); err != nil {
		return store.RevocationJob{}, false, err
	}
	if req.Reason == "" {
		req.Reason = "unspecified"
	}
	if strings.TrimSpace(batchID) == "" {
		return store.RevocationJob{}, false, fault.New(fault.InvalidArgument, "batch id is empty")
	}
	now := s.cfg.Now()
	id := uuid.Must(uuid.NewV7()).String()
	job, created, err = s.cfg.Jobs.StartBatchRevocation(ctx, store.RevocationJob{ID: id, Kind: store.JobKindBatch, Target: batchID,
		Reason: req.Reason, ReasonCode: code, Note: req.Note, Actor: req.Actor, CreatedAt: now},
		&store.AuditEvent{At: now, Actor: req.Actor, Action: "token_batch.revoke", ObjectType: "token_batch",
			ObjectID: batchID, Detail: req.detail(code) + " job=" + id + " started"})
	if err != nil {
		return store.RevocationJob{}, false, err
	}
	if job.Status == store.JobRunning {
		s.wake.Wake()
	}
	return job, created, nil
}

// Job returns one bulk revocation job.
func (s *Service) Job(ctx context.Context, id string) (store.RevocationJob, error) {
	return s.cfg.Jobs.GetRevocationJob(ctx, id)
}

// Jobs returns the newest bulk revocation jobs.
func (s *Service) Jobs(ctx context.Context, limit int) ([]store.RevocationJob, error) {
	return s.cfg.Jobs.ListRevocationJobs(ctx, limit)
}

// Run works bulk revocation jobs until ctx ends: it claims any running job
// whose lease ran out — one this replica just started, or one a stopped
// replica left half done — and runs it step by step from its cursor.
// Every replica runs this; the lease keeps one replica per job.
func (s *Service) Run(ctx context.Context) error {
	loop.RunNow(ctx, s.cfg.PollInterval, s.wake.C(), func(ctx context.Context) {
		for ctx.Err() == nil && s.runOne(ctx) {
		}
	})
	return nil
}

// runOne claims and runs one job; it reports whether it found one.
func (s *Service) runOne(ctx context.Context) bool {
	now := s.cfg.Now()
	job, ok, err := s.cfg.Jobs.ClaimRevocationJob(ctx, s.cfg.Owner, now, now.Add(s.cfg.Lease))
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("revocation jobs: claim failed", "err", err)
		}
		return false
	}
	if !ok {
		return false
	}
	s.cfg.Log.Info("revocation job claimed", "job", job.ID, "batch", job.Target, "done", job.Done, "total", job.Total)
	if err := s.RunJob(ctx, job); err != nil && ctx.Err() == nil {
		s.cfg.Log.Warn("revocation job stopped", "job", job.ID, "err", err)
	}
	return true
}

// RunJob runs the steps of a job this replica holds the lease on until it
// is done, fails, the lease is lost or ctx ends (the lease is then given
// back so another replica continues without waiting for it to run out).
func (s *Service) RunJob(ctx context.Context, job store.RevocationJob) error {
	failures := 0
	crlDue, lastCRL := false, time.Time{}
	var crlBusy atomic.Bool // a background publication runs
	for {
		if err := ctx.Err(); err != nil {
			s.release(job.ID)
			return err
		}
		now := s.cfg.Now()
		ch, err := s.cfg.Jobs.RevokeBatchChunk(ctx, store.ChunkRequest{
			JobID: job.ID, Owner: s.cfg.Owner, Limit: s.cfg.ChunkSize, At: now, LeaseUntil: now.Add(s.cfg.Lease),
			DeviceAudit: func(deviceID string, serials []string) store.AuditEvent {
				return store.AuditEvent{At: now, Actor: job.Actor, Action: "device.revoke", ObjectType: "device",
					ObjectID: deviceID, Detail: fmt.Sprintf("reason=%s(%d) batch=%s job=%s certificates=%d%s",
						job.Reason, job.ReasonCode, job.Target, job.ID, len(serials), noteDetail(job.Note))}
			},
			FinishAudit: func(j store.RevocationJob) store.AuditEvent {
				return store.AuditEvent{At: now, Actor: j.Actor, Action: "token_batch.revoke", ObjectType: "token_batch",
					ObjectID: j.Target, Detail: fmt.Sprintf("reason=%s(%d) job=%s done devices=%d revoked=%d",
						j.Reason, j.ReasonCode, j.ID, j.Done, j.Revoked)}
			},
		})
		switch {
		case err == nil:
		case fault.Is(err, fault.Conflict):
			return err // another replica took the job over
		case ctx.Err() != nil:
			s.release(job.ID)
			return ctx.Err()
		default:
			failures++
			if failures >= maxStepFailures {
				if ferr := s.cfg.Jobs.FailRevocationJob(context.WithoutCancel(ctx), job.ID, s.cfg.Owner,
					fault.MessageOf(err), s.cfg.Now()); ferr != nil {
					return errors.Join(err, ferr)
				}
				return err
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(failures) * 200 * time.Millisecond):
			}
			continue
		}
		failures = 0
		crlDue = crlDue || len(ch.Serials) > 0
		finished := ch.Job.Status != store.JobRunning
		// A CRL with 100k entries takes a few hundred milliseconds to sign,
		// a million several seconds: republishing after every step would
		// make a big batch quadratic, and waiting for each publication
		// would hold back the next steps' denies and kicks. While the job
		// runs, the list is republished in the background, at most every
		// crlEvery and one at a time; the last step waits for a list that
		// holds every revocation of the job.
		publish := finished && (crlDue || crlBusy.Load())
		if len(ch.Devices) > 0 || publish {
			// The step is committed; a refresh, kick or CRL that lags is
			// caught up by the core's poll and the CRL's own retry.
			if err := s.afterMany(ctx, ch.Devices, "device.revoke", publish); err != nil {
				s.cfg.Log.Warn("revocation job: side effect lagging", "job", job.ID, "err", err)
			}
		}
		if !finished && crlDue && s.cfg.CRL != nil && !crlBusy.Load() && s.cfg.Now().Sub(lastCRL) >= crlEvery {
			crlDue, lastCRL = false, s.cfg.Now()
			crlBusy.Store(true)
			go func() {
				defer crlBusy.Store(false)
				if err := s.cfg.CRL.Publish(ctx); err != nil && ctx.Err() == nil {
					s.cfg.Log.Warn("revocation job: CRL lagging; retried in the background", "job", job.ID, "err", err)
				}
			}()
		}
		job = ch.Job
		if job.Status != store.JobRunning {
			s.cfg.Log.Info("revocation job finished", "job", job.ID, "status", job.Status, "done", job.Done, "revoked", job.Revoked)
			return nil
		}
	}
}

// crlEvery bounds how often a running revocation job republishes the CRL.
const crlEvery = time.Second

func (s *Service) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.cfg.Jobs.ReleaseRevocationJob(ctx, id, s.cfg.Owner)
}

func noteDetail(note string) string {
	if note == "" {
		return ""
	}
	return " note=" + note
}
