package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// JobStatus is the state of a bulk revocation job.
type JobStatus string

// Job states. A running job is worked on by whichever replica holds its
// lease; a failed one keeps its cursor and resumes when started again.
const (
	JobRunning JobStatus = "running"
	JobDone    JobStatus = "done"
	JobFailed  JobStatus = "failed"
)

// JobKindBatch revokes every device enrolled with a token of one batch.
const JobKindBatch = "batch"

// RevocationJob is a bulk revocation and its progress. Done counts devices
// processed (Cursor is the last of them, in id order); Revoked counts those
// this job changed (a device revoked earlier is processed but not changed).
type RevocationJob struct {
	ID         string
	Kind       string
	Target     string
	Reason     string
	ReasonCode int
	Note       string
	Actor      string
	Status     JobStatus
	Total      int64
	Done       int64
	Revoked    int64
	Cursor     string
	Error      string
	LeaseOwner string
	LeaseUntil time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

type revocationJobRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	Kind       string `gorm:"column:kind"`
	Target     string `gorm:"column:target"`
	Reason     string `gorm:"column:reason"`
	ReasonCode int    `gorm:"column:reason_code"`
	Note       string `gorm:"column:note"`
	Actor      string `gorm:"column:actor"`
	Status     string `gorm:"column:status"`
	Total      int64  `gorm:"column:total"`
	Done       int64  `gorm:"column:done_count"`
	Revoked    int64  `gorm:"column:revoked_count"`
	Cursor     string `gorm:"column:cursor_device"`
	Error      string `gorm:"column:error"`
	LeaseOwner string `gorm:"column:lease_owner"`
	LeaseUntil int64  `gorm:"column:lease_until"`
	CreatedAt  int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt  int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (revocationJobRow) TableName() string { return "revocation_jobs" }

func (r revocationJobRow) domain() RevocationJob {
	return RevocationJob{ID: r.ID, Kind: r.Kind, Target: r.Target, Reason: r.Reason, ReasonCode: r.ReasonCode,
		Note: r.Note, Actor: r.Actor, Status: JobStatus(r.Status), Total: r.Total, Done: r.Done, Revoked: r.Revoked,
		Cursor: r.Cursor, Error: r.Error, LeaseOwner: r.LeaseOwner, LeaseUntil: fromMS(r.LeaseUntil),
		CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
}

// StartBatchRevocation revokes token batch j.Target — its unused tokens can
// no longer enroll — and records the job that revokes the devices enrolled
// with its tokens, with audit, in one transaction. A batch has at most one
// job: when it already has one, that job is returned and nothing new is
// written, except that a failed job is set running again from its cursor.
// created reports whether a new job was recorded.
func (s *Store) StartBatchRevocation(ctx context.Context, j RevocationJob, audit *AuditEvent) (RevocationJob, bool, error) {
	out, created, err := s.startBatchRevocation(ctx, j, audit)
	if fault.Is(err, fault.AlreadyExists) {
		// A concurrent start on another replica recorded the job first.
		out, created, err = s.startBatchRevocation(ctx, j, audit)
	}
	return out, created, err
}

func (s *Store) startBatchRevocation(ctx context.Context, j RevocationJob, audit *AuditEvent) (RevocationJob, bool, error) {
	var (
		out     RevocationJob
		created bool
	)
	at := ms(j.CreatedAt)
	err := s.write(ctx, func(tx *gorm.DB) error {
		var b batchRow
		if err := tx.Where("id = ?", j.Target).Take(&b).Error; err != nil {
			return classify(err, "token batch "+j.Target)
		}
		var r revocationJobRow
		err := tx.Where("kind = ? AND target = ?", JobKindBatch, j.Target).Take(&r).Error
		switch {
		case err == nil:
			if r.Status == string(JobFailed) {
				if err := tx.Model(&revocationJobRow{}).Where("id = ? AND status = ?", r.ID, string(JobFailed)).
					Updates(map[string]any{"status": string(JobRunning), "error": "", "updated_at": at}).Error; err != nil {
					return classify(err, "revocation job "+r.ID)
				}
				r.Status, r.Error, r.UpdatedAt = string(JobRunning), "", at
			}
			out = r.domain()
			return nil
		case !errors.Is(err, gorm.ErrRecordNotFound):
			return classify(err, "revocation job")
		}
		if err := tx.Model(&batchRow{}).Where("id = ? AND revoked_at IS NULL", j.Target).
			Update("revoked_at", at).Error; err != nil {
			return classify(err, "token batch "+j.Target)
		}
		var total int64
		if err := tx.Model(&tokenRow{}).Where("batch_id = ? AND used_by IS NOT NULL", j.Target).
			Distinct("used_by").Count(&total).Error; err != nil {
			return classify(err, "bootstrap tokens")
		}
		if j.ID == "" {
			j.ID = uuid.Must(uuid.NewV7()).String()
		}
		r = revocationJobRow{ID: j.ID, Kind: JobKindBatch, Target: j.Target, Reason: j.Reason, ReasonCode: j.ReasonCode,
			Note: j.Note, Actor: j.Actor, Status: string(JobRunning), Total: total, CreatedAt: at, UpdatedAt: at}
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "revocation job for batch "+j.Target)
		}
		if audit != nil {
			if audit.ObjectID == "" {
				audit.ObjectID = j.Target
			}
		}
		out, created = r.domain(), true
		return s.appendAuditTx(tx, audit)
	})
	return out, created, err
}

// GetRevocationJob returns one job.
func (s *Store) GetRevocationJob(ctx context.Context, id string) (RevocationJob, error) {
	var r revocationJobRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return RevocationJob{}, classify(err, "revocation job "+id)
	}
	return r.domain(), nil
}

// ListRevocationJobs returns the newest jobs first.
func (s *Store) ListRevocationJobs(ctx context.Context, limit int) ([]RevocationJob, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows []revocationJobRow
	if err := s.db.WithContext(ctx).Order("created_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "revocation jobs")
	}
	out := make([]RevocationJob, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// ClaimRevocationJob leases the oldest running job whose lease ran out (or
// that owner already holds) to owner until until. Of replicas claiming at
// once, the conditional UPDATE lets exactly one take a job. ok is false when
// there is nothing to run.
func (s *Store) ClaimRevocationJob(ctx context.Context, owner string, now, until time.Time) (job RevocationJob, ok bool, err error) {
	var ids []string
	if err := s.db.WithContext(ctx).Model(&revocationJobRow{}).
		Where("status = ? AND (lease_until < ? OR lease_owner = ?)", string(JobRunning), ms(now), owner).
		Order("created_at, id").Limit(10).Pluck("id", &ids).Error; err != nil {
		return RevocationJob{}, false, classify(err, "revocation jobs")
	}
	for _, id := range ids {
		var won bool
		err := s.write(ctx, func(tx *gorm.DB) error {
			res := tx.Model(&revocationJobRow{}).
				Where("id = ? AND status = ? AND (lease_until < ? OR lease_owner = ?)", id, string(JobRunning), ms(now), owner).
				Updates(map[string]any{"lease_owner": owner, "lease_until": ms(until)})
			if res.Error != nil {
				return classify(res.Error, "revocation job "+id)
			}
			won = res.RowsAffected == 1
			return nil
		})
		if err != nil {
			return RevocationJob{}, false, err
		}
		if won {
			j, err := s.GetRevocationJob(ctx, id)
			return j, err == nil, err
		}
	}
	return RevocationJob{}, false, nil
}

// ChunkRequest is one step of a batch revocation job.
type ChunkRequest struct {
	JobID string
	// Owner must hold the job's lease; the step extends it to LeaseUntil.
	Owner      string
	Limit      int
	At         time.Time
	LeaseUntil time.Time
	// DeviceAudit returns the audit event of one device the step revoked.
	DeviceAudit func(deviceID string, serials []string) AuditEvent
	// FinishAudit returns the event recorded when the job is done.
	FinishAudit func(RevocationJob) AuditEvent
}

// Chunk is what one step did.
type Chunk struct {
	Job     RevocationJob // the job after the step
	Devices []string      // devices this step revoked (or whose certificates it revoked)
	Serials []string      // certificates this step revoked
}

// Each statement of a step covers the devices in (cursor, last]: constant
// SQL text, so the statements are prepared once, and no id list is bound.
const (
	sqlChunkDevices = `SELECT DISTINCT used_by FROM bootstrap_tokens
WHERE batch_id = ? AND used_by IS NOT NULL AND used_by > ? ORDER BY used_by LIMIT ?`
	sqlChunkRevokeDevices = `UPDATE devices SET status = ?, updated_at = ?
WHERE status <> ? AND id IN (SELECT used_by FROM bootstrap_tokens WHERE batch_id = ? AND used_by > ? AND used_by <= ?)
RETURNING id`
	sqlChunkRevokeCerts = `UPDATE certificates SET status = ?, revoked_at = ?, revocation_reason = ?
WHERE status <> ? AND device_id IN (SELECT used_by FROM bootstrap_tokens WHERE batch_id = ? AND used_by > ? AND used_by <= ?)
RETURNING serial, device_id`
)

// RevokeBatchChunk revokes the next Limit devices of a batch job after its
// cursor, with their certificates and one audit event per device, and
// advances the cursor, in one transaction: a crash loses at most the step
// in flight, and no device is revoked twice by one job. The job's last
// step marks it done and records FinishAudit. A caller that lost the lease
// gets a conflict and changes nothing.
func (s *Store) RevokeBatchChunk(ctx context.Context, req ChunkRequest) (Chunk, error) {
	if req.Limit <= 0 {
		return Chunk{}, fault.New(fault.InvalidArgument, "chunk size must be positive")
	}
	var out Chunk
	err := s.write(ctx, func(tx *gorm.DB) error {
		out = Chunk{}
		at := ms(req.At)
		r, held, err := holdJobLease(tx, req.JobID, req.Owner, at)
		if err != nil {
			return err
		}
		if !held {
			out.Job = r.domain() // no longer running: nothing to do
			return nil
		}
		ids, err := scanStrings(tx.Raw(sqlChunkDevices, r.Target, r.Cursor, req.Limit))
		if err != nil {
			return classify(err, "bootstrap tokens")
		}
		if len(ids) > 0 {
			if err := s.revokeChunk(tx, &r, ids, at, req.DeviceAudit, &out); err != nil {
				return err
			}
		}
		finished := len(ids) < req.Limit
		if err := saveJobStep(tx, &r, finished, ms(req.LeaseUntil), at); err != nil {
			return err
		}
		out.Job = r.domain()
		if finished && req.FinishAudit != nil {
			e := req.FinishAudit(out.Job)
			return s.appendAuditTx(tx, &e)
		}
		return nil
	})
	return out, err
}

// holdJobLease checks, inside a step's transaction, that owner still holds
// job id's lease, and returns the job. held is false, without an error,
// when the job is no longer running; a running job leased to another owner
// is a conflict.
func holdJobLease(tx *gorm.DB, id, owner string, at int64) (r revocationJobRow, held bool, err error) {
	// The guard UPDATE takes the job row's lock (PostgreSQL), so a
	// replica that claimed the job meanwhile waits, then sees another owner.
	res := tx.Model(&revocationJobRow{}).Where("id = ? AND lease_owner = ? AND status = ?", id, owner, string(JobRunning)).
		Update("updated_at", at)
	if res.Error != nil {
		return r, false, classify(res.Error, "revocation job "+id)
	}
	if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
		return r, false, classify(err, "revocation job "+id)
	}
	if res.RowsAffected == 0 {
		if r.Status != string(JobRunning) {
			return r, false, nil
		}
		return r, false, fault.New(fault.Conflict, "revocation job %s is leased to another replica", id)
	}
	if r.Kind != JobKindBatch {
		return r, false, fault.New(fault.InvalidArgument, "revocation job %s is of unknown kind %q", r.ID, r.Kind)
	}
	return r, true, nil
}

// revokeChunk revokes ids — the next devices of r's batch after its cursor,
// in id order — and their certificates, records deviceAudit's event for
// each device it changed, and moves r's cursor and counts past ids. Every
// statement covers the range (cursor, last id].
func (s *Store) revokeChunk(tx *gorm.DB, r *revocationJobRow, ids []string, at int64,
	deviceAudit func(deviceID string, serials []string) AuditEvent, out *Chunk) error {
	last := ids[len(ids)-1]
	changed, err := scanStrings(tx.Raw(sqlChunkRevokeDevices, string(DeviceRevoked), at, string(DeviceRevoked),
		r.Target, r.Cursor, last))
	if err != nil {
		return classify(err, "devices")
	}
	serials, all, err := revokeChunkCerts(tx, r, last, at)
	if err != nil {
		return err
	}
	out.Serials = all
	// A device counts as changed when its status or one of its
	// certificates did (a device revoked earlier may keep a valid one).
	seen := make(map[string]bool, len(changed))
	for _, id := range changed {
		seen[id] = true
	}
	for id := range serials {
		seen[id] = true
	}
	for _, id := range ids {
		if !seen[id] {
			continue
		}
		out.Devices = append(out.Devices, id)
		if deviceAudit == nil {
			continue
		}
		e := deviceAudit(id, serials[id])
		if err := s.appendAuditTx(tx, &e); err != nil {
			return err
		}
	}
	r.Cursor = last
	r.Done += int64(len(ids))
	r.Revoked += int64(len(out.Devices))
	if len(out.Devices) > 0 {
		return s.notify(tx, TopicDevices)
	}
	return nil
}

// revokeChunkCerts revokes the certificates of r's devices in (cursor,
// last] and returns their serials, by device and in the order revoked.
func revokeChunkCerts(tx *gorm.DB, r *revocationJobRow, last string, at int64) (map[string][]string, []string, error) {
	rows, err := tx.Raw(sqlChunkRevokeCerts, string(CertRevoked), at, r.ReasonCode, string(CertRevoked),
		r.Target, r.Cursor, last).Rows()
	if err != nil {
		return nil, nil, classify(err, "certificates")
	}
	byDevice := map[string][]string{}
	var all []string
	for rows.Next() {
		var serial, dev string
		if err := rows.Scan(&serial, &dev); err != nil {
			_ = rows.Close()
			return nil, nil, classify(err, "certificates")
		}
		byDevice[dev] = append(byDevice[dev], serial)
		all = append(all, serial)
	}
	// A failure mid-stream ends Next early: without this check the
	// step would commit with serials missing from its list.
	if err := rows.Err(); err != nil {
		_ = rows.Close()
		return nil, nil, classify(err, "certificates")
	}
	if err := rows.Close(); err != nil {
		return nil, nil, classify(err, "certificates")
	}
	return byDevice, all, nil
}

// saveJobStep records r's progress and extends its lease to leaseUntil;
// a finished step also marks the job done.
func saveJobStep(tx *gorm.DB, r *revocationJobRow, finished bool, leaseUntil, at int64) error {
	upd := map[string]any{"cursor_device": r.Cursor, "done_count": r.Done, "revoked_count": r.Revoked,
		"lease_until": leaseUntil, "updated_at": at}
	r.LeaseUntil, r.UpdatedAt = leaseUntil, at
	if finished {
		upd["status"], r.Status = string(JobDone), string(JobDone)
		// Devices enrolled between the count and the batch's revocation
		// (none, normally) still show as done, not as 101 of 100.
		if r.Total < r.Done {
			upd["total"], r.Total = r.Done, r.Done
		}
	}
	if err := tx.Model(&revocationJobRow{}).Where("id = ?", r.ID).Updates(upd).Error; err != nil {
		return classify(err, "revocation job "+r.ID)
	}
	return nil
}

// FailRevocationJob marks a job failed with msg; it keeps its cursor and
// resumes when started again. Only the lease holder may fail it.
func (s *Store) FailRevocationJob(ctx context.Context, id, owner, msg string, at time.Time) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		return classify(tx.Model(&revocationJobRow{}).Where("id = ? AND lease_owner = ? AND status = ?", id, owner, string(JobRunning)).
			Updates(map[string]any{"status": string(JobFailed), "error": msg, "lease_until": 0, "updated_at": ms(at)}).Error,
			"revocation job "+id)
	})
}

// ReleaseRevocationJob gives up owner's lease on a running job at once, so
// another replica need not wait for it to run out (e.g. on shutdown).
func (s *Store) ReleaseRevocationJob(ctx context.Context, id, owner string) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		return classify(tx.Model(&revocationJobRow{}).Where("id = ? AND lease_owner = ? AND status = ?", id, owner, string(JobRunning)).
			Updates(map[string]any{"lease_until": 0}).Error, "revocation job "+id)
	})
}

func scanStrings(q *gorm.DB) ([]string, error) {
	rows, err := q.Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// RevokeCertificateAudited revokes one certificate and records the audit
// event audit builds from it, in one transaction, so a revocation is never
// without its event. Revoking an already revoked certificate keeps the first
// revocation's time and reason (and is audited as a request); so does
// revoking a discarded one (DiscardCertificate: revoked from the start),
// which changes nothing else. It returns the certificate as stored after
// the change.
func (s *Store) RevokeCertificateAudited(ctx context.Context, serial string, reason int, at time.Time, audit func(Certificate) AuditEvent) (Certificate, error) {
	var out Certificate
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Model(&certRow{}).Where("serial = ? AND status <> ?", serial, string(CertRevoked)).
			Updates(map[string]any{"status": string(CertRevoked), "revoked_at": ms(at), "revocation_reason": reason}).Error; err != nil {
			return classify(err, "certificate "+serial)
		}
		var r certRow
		err := tx.Where("serial = ?", serial).Take(&r).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			var d discardedRow
			if err := tx.Where("serial = ?", serial).Take(&d).Error; err != nil {
				return classify(err, "certificate "+serial)
			}
			out = d.domain()
		case err != nil:
			return classify(err, "certificate "+serial)
		default:
			out = r.domain()
			if err := s.notify(tx, TopicDevices); err != nil {
				return err
			}
		}
		if audit == nil {
			return nil
		}
		e := audit(out)
		return s.appendAuditTx(tx, &e)
	})
	return out, err
}
