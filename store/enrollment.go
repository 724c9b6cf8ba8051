package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// tokenInsertChunk keeps one INSERT under both backends' bind-parameter limits.
const tokenInsertChunk = 1000

// CreateTokenBatch stores a batch, the hashes of its tokens and audit (when
// not nil) in one transaction.
func (s *Store) CreateTokenBatch(ctx context.Context, b TokenBatch, tokens []NewToken, audit *AuditEvent) (TokenBatch, error) {
	b.CreatedAt = s.now()
	b.Count = len(tokens)
	br := batchRow{ID: b.ID, Fleet: b.Fleet, Profile: b.Profile, Count: b.Count, ExpiresAt: ms(b.ExpiresAt),
		CreatedBy: b.CreatedBy, CreatedAt: ms(b.CreatedAt)}
	rows := make([]tokenRow, len(tokens))
	for i, t := range tokens {
		rows[i] = tokenRow{Hash: t.Hash, BatchID: b.ID, DeviceID: strPtr(t.DeviceID), ExpiresAt: br.ExpiresAt}
	}
	var fixed []string
	for _, t := range tokens {
		if t.DeviceID != "" {
			fixed = append(fixed, t.DeviceID)
		}
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if len(fixed) > 0 {
			if err := s.checkIDsFree(tx, fixed, b.Fleet, b.CreatedAt); err != nil {
				return err
			}
		}
		if err := tx.Create(&br).Error; err != nil {
			return classify(err, "token batch")
		}
		if len(rows) > 0 {
			if err := tx.CreateInBatches(rows, tokenInsertChunk).Error; err != nil {
				return classify(err, "bootstrap token")
			}
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return TokenBatch{}, err
	}
	return b, nil
}

// reservationLock is the PostgreSQL advisory lock that orders the two
// writers of device id reservations: a batch that fixes ids takes it
// exclusively, an enrollment that picks its own id shares it. Without it
// a batch could check that an id is free while an enrollment of that id,
// checking the batch's tokens did not exist yet, commits: each misses the
// other's write (under READ COMMITTED each statement sees only what was
// committed when it began). SQLite needs no lock: its writes are
// serialised already.
const reservationLock = 0x6761746568 // "gateh"

// sqlIDsTaken finds the first of a batch's fixed ids that is taken: by a
// device that the batch could not claim (enrolled, or pending in another
// fleet), or by a live unused token. One statement, so one snapshot: an
// enrollment committing meanwhile (token used and device created together)
// is seen either wholly or not at all. The id list is spliced in as
// placeholders (idsPlaceholder).
const sqlIDsTaken = `SELECT id FROM devices WHERE id IN (%[1]s) AND (status <> 'pending' OR fleet <> ?)
UNION ALL
SELECT t.device_id FROM bootstrap_tokens t JOIN token_batches b ON b.id = t.batch_id
WHERE t.device_id IN (%[1]s) AND t.used_at IS NULL AND t.expires_at > ? AND b.revoked_at IS NULL
LIMIT 1`

// checkIDsFree refuses a batch whose fixed ids are already enrolled or
// reserved by another live token (device_id_reserved). Run inside the
// batch's transaction.
func (s *Store) checkIDsFree(tx *gorm.DB, ids []string, fleet string, at time.Time) error {
	if s.postgres {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", reservationLock).Error; err != nil {
			return classify(err, "device id reservations")
		}
	}
	// Every id is bound twice: chunks of half an insert chunk stay under
	// both backends' bind-parameter limits. A short chunk is padded with
	// its first id, so the statement has one shape (prepared once), whatever
	// the batch size.
	const n = tokenInsertChunk / 2
	query := fmt.Sprintf(sqlIDsTaken, strings.TrimSuffix(strings.Repeat("?,", n), ","))
	for start := 0; start < len(ids); start += n {
		chunk := ids[start:min(start+n, len(ids))]
		in := make([]any, n)
		for i := range in {
			in[i] = chunk[0]
			if i < len(chunk) {
				in[i] = chunk[i]
			}
		}
		args := make([]any, 0, 2*n+2)
		args = append(append(append(append(args, in...), fleet), in...), ms(at))
		var taken []string
		if err := tx.Raw(query, args...).Scan(&taken).Error; err != nil {
			return classify(err, "device id reservations")
		}
		if len(taken) > 0 {
			return fault.New(fault.DeviceIDReserved,
				"device id %q is already enrolled or fixed to another unused bootstrap token", taken[0])
		}
	}
	return nil
}

// GetTokenBatch returns a batch with its count of used tokens.
func (s *Store) GetTokenBatch(ctx context.Context, id string) (TokenBatch, error) {
	var r batchRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return TokenBatch{}, classify(err, "token batch "+id)
	}
	var used int64
	if err := s.db.WithContext(ctx).Model(&tokenRow{}).Where("batch_id = ? AND used_at IS NOT NULL", id).
		Count(&used).Error; err != nil {
		return TokenBatch{}, classify(err, "token batch "+id)
	}
	b := batchDomain(r)
	b.Used = int(used)
	return b, nil
}

// ListTokenBatches returns the newest batches first, with used counts.
func (s *Store) ListTokenBatches(ctx context.Context, limit int) ([]TokenBatch, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows []batchRow
	if err := s.db.WithContext(ctx).Order("created_at DESC, id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "token batches")
	}
	out := make([]TokenBatch, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var counts []struct {
		BatchID string
		Used    int
	}
	if err := s.db.WithContext(ctx).Model(&tokenRow{}).Select("batch_id, COUNT(*) AS used").
		Where("batch_id IN ? AND used_at IS NOT NULL", ids).Group("batch_id").Scan(&counts).Error; err != nil {
		return nil, classify(err, "token batches")
	}
	used := make(map[string]int, len(counts))
	for _, c := range counts {
		used[c.BatchID] = c.Used
	}
	for i, r := range rows {
		out[i] = batchDomain(r)
		out[i].Used = used[r.ID]
	}
	return out, nil
}

func batchDomain(r batchRow) TokenBatch {
	return TokenBatch{ID: r.ID, Fleet: r.Fleet, Profile: r.Profile, Count: r.Count, ExpiresAt: fromMS(r.ExpiresAt),
		CreatedBy: r.CreatedBy, CreatedAt: fromMS(r.CreatedAt), RevokedAt: fromOptMS(r.RevokedAt)}
}

// GetBootstrapToken looks a token up by its hash, with its batch's fleet and profile.
func (s *Store) GetBootstrapToken(ctx context.Context, hash string) (BootstrapToken, error) {
	var r struct {
		Hash           string
		BatchID        string
		DeviceID       *string
		ExpiresAt      int64
		UsedAt         *int64
		UsedBy         *string
		Fleet          string
		Profile        string
		BatchRevokedAt *int64
	}
	err := s.db.WithContext(ctx).Table("bootstrap_tokens AS t").
		Select("t.hash, t.batch_id, t.device_id, t.expires_at, t.used_at, t.used_by, b.fleet, b.profile, b.revoked_at AS batch_revoked_at").
		Joins("JOIN token_batches b ON b.id = t.batch_id").Where("t.hash = ?", hash).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return BootstrapToken{}, fault.New(fault.TokenInvalid, "unknown bootstrap token")
	}
	if err != nil {
		return BootstrapToken{}, classify(err, "bootstrap token")
	}
	return BootstrapToken{Hash: r.Hash, BatchID: r.BatchID, DeviceID: deref(r.DeviceID),
		ExpiresAt: fromMS(r.ExpiresAt), UsedAt: fromOptMS(r.UsedAt), UsedBy: deref(r.UsedBy),
		Fleet: r.Fleet, Profile: r.Profile, BatchRevokedAt: fromOptMS(r.BatchRevokedAt)}, nil
}

// sqlEnrollmentToken reads what an enrollment needs before it signs: the
// token, its batch, and the batch's profile, in one query and one snapshot.
const sqlEnrollmentToken = `SELECT t.hash, t.batch_id, t.device_id, t.expires_at, t.used_at, t.used_by, t.used_serial,
b.fleet, b.revoked_at, p.name, p.key_types, p.validity_seconds, p.renew_window_seconds,
p.superseded_grace_seconds, p.renew_after_expiry_seconds, p.server_keygen, p.device_id_from, p.roles,
p.created_at, p.updated_at
FROM bootstrap_tokens t JOIN token_batches b ON b.id = t.batch_id JOIN profiles p ON p.name = b.profile
WHERE t.hash = ?`

// GetEnrollmentToken is GetBootstrapToken together with the profile of the
// token's batch, read in one query: the two lookups an enrollment makes
// before it signs.
func (s *Store) GetEnrollmentToken(ctx context.Context, hash string) (BootstrapToken, Profile, error) {
	var (
		t                 BootstrapToken
		p                 profileRow
		deviceID, usedBy  *string
		usedSerial        *string
		expiresAt         int64
		usedAt, revokedAt *int64
	)
	err := s.readRow(ctx, sqlEnrollmentToken, []any{hash}, &t.Hash, &t.BatchID, &deviceID, &expiresAt, &usedAt, &usedBy,
		&usedSerial, &t.Fleet, &revokedAt, &p.Name, &p.KeyTypes, &p.ValiditySeconds, &p.RenewWindowSeconds,
		&p.SupersededGraceSeconds, &p.RenewAfterExpirySeconds, &p.ServerKeygen, &p.DeviceIDFrom, &p.Roles,
		&p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return BootstrapToken{}, Profile{}, fault.New(fault.TokenInvalid, "unknown bootstrap token")
	}
	if err != nil {
		return BootstrapToken{}, Profile{}, classify(err, "bootstrap token")
	}
	t.DeviceID, t.UsedBy, t.UsedSerial, t.Profile = deref(deviceID), deref(usedBy), deref(usedSerial), p.Name
	t.ExpiresAt, t.UsedAt, t.BatchRevokedAt = fromMS(expiresAt), fromOptMS(usedAt), fromOptMS(revokedAt)
	return t, p.domain(), nil
}

// The enrollment transaction's statements, hand-written: through gorm each
// was built by reflection on every call and, inside a transaction, parsed by
// SQLite again every time; here they are prepared once on the writer
// connection (writer.go). They are portable SQL; PostgreSQL gets them with
// $n placeholders (pgQuery).
const (
	// The token is consumed by a conditional UPDATE, so of any number of
	// concurrent enrollments with one token exactly one changes the row. The
	// batch check is a correlated EXISTS, a primary key lookup: SQLite runs
	// "batch_id IN (SELECT id … WHERE revoked_at IS NULL)" as a scan of every
	// batch.
	// The enrollment's claim (ClaimToken) must still be the token's: a
	// holder that outlived its claim loses the token to the next claimant.
	sqlConsumeToken = `UPDATE bootstrap_tokens SET used_at = ?, used_by = ?, used_serial = ?
WHERE hash = ? AND used_at IS NULL AND expires_at > ? AND COALESCE(claim_id, '') = ?
AND EXISTS (SELECT 1 FROM token_batches b WHERE b.id = bootstrap_tokens.batch_id AND b.revoked_at IS NULL)`
	// sqlConsumeTokenLocked is sqlConsumeToken for PostgreSQL: the batch
	// row is share-locked until the enrollment commits. A batch revocation
	// updates that row first (StartBatchRevocation), so it waits for an
	// enrollment in flight, and its job, which finds the batch's devices by
	// their used tokens, sees it; or it went first, and the lock's re-check
	// of revoked_at refuses the token. Without the lock an enrollment that
	// had passed the check but not committed was invisible to the job,
	// which could finish without it: a revoked batch's device kept an
	// active certificate. SQLite's single writer orders the two already.
	sqlConsumeTokenLocked = `UPDATE bootstrap_tokens SET used_at = ?, used_by = ?, used_serial = ?
WHERE hash = ? AND used_at IS NULL AND expires_at > ? AND COALESCE(claim_id, '') = ?
AND EXISTS (SELECT 1 FROM token_batches b WHERE b.id = bootstrap_tokens.batch_id AND b.revoked_at IS NULL FOR SHARE)`
	sqlTokenState = `SELECT used_at, expires_at, claim_id, claim_until FROM bootstrap_tokens WHERE hash = ?`
	// sqlIDReserved finds a live unused token that fixes an id. The
	// enrollment's own token is used already (consumed just before).
	sqlIDReserved = `SELECT 1 FROM bootstrap_tokens t JOIN token_batches b ON b.id = t.batch_id
WHERE t.device_id = ? AND t.used_at IS NULL AND t.expires_at > ? AND b.revoked_at IS NULL LIMIT 1`
	sqlReservationShare = `SELECT pg_advisory_xact_lock_shared(?)`
	// A pending device is claimed the same way: of concurrent claims only one
	// changes the row.
	sqlClaimDevice = `UPDATE devices SET status = ?, profile = ?, updated_at = ?
WHERE id = ? AND status = ? AND fleet = ?
RETURNING id, fleet, profile, status, labels, created_at, updated_at`
	sqlInsertDevice = `INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsertCert = `INSERT INTO certificates (serial, fingerprint, device_id, not_before, not_after, status, pem,
revoked_at, revocation_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// CompleteEnrollment consumes the token, creates or activates the device and
// records its first certificate, all in one transaction. The token is
// consumed by a conditional UPDATE, so of any number of concurrent
// enrollments with one token exactly one commits; the others get token_used.
func (s *Store) CompleteEnrollment(ctx context.Context, e Enrollment) (Device, error) {
	var out Device
	err := s.writeSQL(ctx, func(ex execer) error {
		var err error
		out, err = s.enrollTx(ctx, ex, e)
		return err
	})
	return out, err
}

// enrollTx writes one enrollment with ex, inside a transaction.
func (s *Store) enrollTx(ctx context.Context, ex execer, e Enrollment) (Device, error) {
	at := ms(e.At)
	consume := sqlConsumeToken
	if s.postgres {
		consume = sqlConsumeTokenLocked
	}
	res, err := ex.ExecContext(ctx, consume, at, e.Device.ID, e.Cert.Serial, e.TokenHash, at, e.Claim)
	if err != nil {
		return Device{}, classify(err, "bootstrap token")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err != nil {
			return Device{}, classify(err, "bootstrap token")
		}
		return Device{}, tokenRefusal(ctx, ex, e.TokenHash, e.At, e.Claim, true)
	}
	if e.CheckReserved {
		if err := s.checkNotReserved(ctx, ex, e.Device.ID, at); err != nil {
			return Device{}, err
		}
	}
	dev, err := upsertEnrolledDevice(ctx, ex, e.Device, e.At, e.ClaimPending)
	if err != nil {
		return Device{}, err
	}
	c := newCertRow(e.Cert)
	c.CreatedAt = at
	c.Status = string(CertActive)
	insertCert := sqlInsertCert
	if s.postgres {
		// Announces the new device at commit (notify.go) without a round
		// trip of its own, which cost a tenth of an enrollment.
		insertCert = sqlInsertCertNotify
	}
	if _, err := ex.ExecContext(ctx, insertCert, c.Serial, c.Fingerprint, c.DeviceID, c.NotBefore, c.NotAfter,
		c.Status, c.PEM, c.RevokedAt, c.RevocationReason, c.CreatedAt); err != nil {
		return Device{}, classify(err, "certificate "+e.Cert.Serial)
	}
	// Last, so that on PostgreSQL the audit chain's lock is held only
	// from here to commit (auditchain.go).
	if err := s.appendAudit(ctx, ex, e.Audit); err != nil {
		return Device{}, err
	}
	return dev, nil
}

// checkNotReserved refuses an id fixed to another live unused token, so a
// token that fixes no id cannot squat one that does. The device row's
// primary key settles a race with the rightful token (one of the two
// inserts fails); the shared reservation lock (reservationLock) settles one
// with a batch creating the reservation.
func (s *Store) checkNotReserved(ctx context.Context, ex execer, id string, at int64) error {
	if s.postgres {
		if _, err := ex.ExecContext(ctx, sqlReservationShare, reservationLock); err != nil {
			return classify(err, "device id reservations")
		}
	}
	var one int
	err := ex.QueryRowContext(ctx, sqlIDReserved, id, at).Scan(&one)
	switch {
	case err == nil:
		return fault.New(fault.DeviceIDReserved, "device id %q is reserved for another bootstrap token", id)
	case errors.Is(err, sql.ErrNoRows):
		return nil
	default:
		return classify(err, "device id reservations")
	}
}

// tokenRefusal explains why a token could not be claimed (ClaimToken) or
// consumed with claim (held: the enrollment's commit).
func tokenRefusal(ctx context.Context, ex execer, hash string, at time.Time, claim string, held bool) error {
	var (
		usedAt, claimUntil *int64
		expiresAt          int64
		claimID            *string
	)
	if err := ex.QueryRowContext(ctx, sqlTokenState, hash).Scan(&usedAt, &expiresAt, &claimID, &claimUntil); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fault.New(fault.TokenInvalid, "unknown bootstrap token")
		}
		return classify(err, "bootstrap token")
	}
	other := claimID != nil && *claimID != claim
	switch {
	case usedAt != nil:
		return fault.New(fault.TokenUsed, "bootstrap token was already used")
	case expiresAt <= ms(at):
		return fault.New(fault.TokenExpired, "bootstrap token has expired")
	case other && claimUntil != nil && *claimUntil > ms(at):
		return fault.New(fault.TokenUsed, "bootstrap token is being redeemed by another request")
	case held && deref(claimID) != claim:
		// The claim lapsed (its holder was slower than the claim's TTL) and
		// was taken, or taken and let go, by another enrollment.
		return fault.New(fault.Conflict, "this enrollment's claim on the bootstrap token lapsed; retry")
	default:
		return fault.New(fault.TokenRevoked, "bootstrap token's batch was revoked")
	}
}

// upsertEnrolledDevice creates the enrolled device, or, with claimPending,
// activates the pre-registered pending device of that id and fleet. The
// claim is a conditional UPDATE, like the token's: of concurrent claims only
// one changes the row. Creating first and classifying a duplicate saves a
// read on the common path (a new device).
func upsertEnrolledDevice(ctx context.Context, ex execer, d Device, at time.Time, claimPending bool) (Device, error) {
	if claimPending {
		var cur deviceRow
		err := ex.QueryRowContext(ctx, sqlClaimDevice, string(DeviceActive), d.Profile, ms(at),
			d.ID, string(DevicePending), d.Fleet).
			Scan(&cur.ID, &cur.Fleet, &cur.Profile, &cur.Status, &cur.Labels, &cur.CreatedAt, &cur.UpdatedAt)
		if err == nil {
			return cur.domain(), nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return Device{}, classify(err, "device "+d.ID)
		}
	}
	d.Status = DeviceActive
	d.CreatedAt, d.UpdatedAt = at, at
	r := newDeviceRow(d)
	if _, err := ex.ExecContext(ctx, sqlInsertDevice, r.ID, r.Fleet, r.Profile, r.Status, r.Labels,
		r.CreatedAt, r.UpdatedAt); err != nil {
		err = classify(err, "device "+d.ID)
		if fault.Is(err, fault.AlreadyExists) {
			// Only a pre-registered, never-enrolled device of the same fleet,
			// claimed by its own token, may be taken over.
			return Device{}, fault.New(fault.AlreadyExists, "device %s is already enrolled", d.ID)
		}
		return Device{}, err
	}
	return r.domain(), nil
}

// RecordRenewal stores a renewed certificate and supersedes the one it
// replaces, provided the old one is still active and the device is active.
// It returns the old certificate as it now is: superseded and due for
// revocation after the device profile's superseded grace, or, with a grace
// of 0, already revoked with reason superseded (the caller then has the CRL
// republished).
//
// The device row is read locked (FOR UPDATE on PostgreSQL; SQLite's single
// writer serialises the whole transaction): revocation and suspension
// update that row first (RevokeDevice, TransitionDevice), so either they
// commit first and this renewal sees the device no longer active, or they
// wait for this commit and their later certificate statements, each with a
// new READ COMMITTED snapshot, see and revoke the renewed certificate. An
// unlocked read let a revocation commit between the check and the insert
// and leave the revoked device with a good certificate.
func (s *Store) RecordRenewal(ctx context.Context, r Renewal) (Certificate, error) {
	var old certRow
	err := s.write(ctx, func(tx *gorm.DB) error {
		// The challenge first: of concurrent renewals with one challenge,
		// exactly one deletes it; the others wait on its row and find it gone.
		// (With claims only one of them gets this far: ClaimRenewal.)
		if r.ChallengeHash != "" {
			if err := s.redeemChallenge(tx, r.ChallengeHash, r.OldSerial); err != nil {
				return err
			}
		}
		var dev deviceRow
		q := tx.Where("id = ?", r.DeviceID)
		if s.postgres {
			q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
		}
		if err := q.Take(&dev).Error; err != nil {
			return classify(err, "device "+r.DeviceID)
		}
		if dev.Status != string(DeviceActive) {
			return fault.New(fault.DeviceNotActive, "device %s is %s", r.DeviceID, dev.Status)
		}
		// The grace is read in this transaction, under the device's lock:
		// the profile a device renews under is the one it has now.
		var grace int64
		if err := tx.Model(&profileRow{}).Where("name = ?", dev.Profile).
			Pluck("superseded_grace_seconds", &grace).Error; err != nil {
			return classify(err, "profile "+dev.Profile)
		}
		now := s.now()
		set := map[string]any{"status": string(CertSuperseded), "revoke_after": ms(now) + grace*1000}
		if grace == 0 {
			set = map[string]any{"status": string(CertRevoked), "revoked_at": ms(now),
				"revocation_reason": ReasonSuperseded}
		}
		// Only with the renewal's own claim (ClaimRenewal), if it took one.
		res := tx.Model(&certRow{}).Where("serial = ? AND device_id = ? AND status = ? AND COALESCE(renew_claim_id, '') = ?",
			r.OldSerial, r.DeviceID, string(CertActive), r.Claim).Updates(set)
		if res.Error != nil {
			return classify(res.Error, "certificate "+r.OldSerial)
		}
		if res.RowsAffected != 1 {
			return fault.New(fault.CertInvalid, "certificate %s is not the device's current certificate", r.OldSerial)
		}
		if err := tx.Where("serial = ?", r.OldSerial).Take(&old).Error; err != nil {
			return classify(err, "certificate "+r.OldSerial)
		}
		r.Cert.CreatedAt = now
		r.Cert.Status = CertActive
		c := newCertRow(r.Cert)
		if err := tx.Create(&c).Error; err != nil {
			return classify(err, "certificate "+r.Cert.Serial)
		}
		if err := s.notify(tx, TopicDevices); err != nil {
			return err
		}
		if r.Audit != nil {
			e, o := *r.Audit, old.domain()
			switch {
			case o.Status == CertRevoked:
				e.Detail += fmt.Sprintf(" old_revoked=superseded(%d)", ReasonSuperseded)
			case o.RevokeAfter != nil:
				e.Detail += " old_revoked_after=" + o.RevokeAfter.UTC().Format(time.RFC3339)
			}
			return s.appendAuditTx(tx, &e)
		}
		return nil
	})
	if err != nil {
		return Certificate{}, err
	}
	return old.domain(), nil
}

// GetCertificate returns one certificate record by serial.
func (s *Store) GetCertificate(ctx context.Context, serial string) (Certificate, error) {
	var r certRow
	err := s.db.WithContext(ctx).Where("serial = ?", serial).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		// A certificate signed for an enrollment or renewal that did not
		// commit is known too, as revoked: OCSP must not call it unknown.
		return s.discarded(ctx, serial)
	}
	if err != nil {
		return Certificate{}, classify(err, "certificate "+serial)
	}
	return r.domain(), nil
}

// ListCertificates returns a device's certificates, newest first, its
// discarded ones (DiscardCertificate) among them: they were signed for it,
// and an operator looking at the device must see them, revoked.
func (s *Store) ListCertificates(ctx context.Context, deviceID string) ([]Certificate, error) {
	var rows []certRow
	if err := s.db.WithContext(ctx).Where("device_id = ?", deviceID).Order("not_before DESC, serial").
		Find(&rows).Error; err != nil {
		return nil, classify(err, "certificates")
	}
	var discarded []discardedRow
	if err := s.db.WithContext(ctx).Where("device_id = ?", deviceID).Find(&discarded).Error; err != nil {
		return nil, classify(err, "discarded certificates")
	}
	out := make([]Certificate, 0, len(rows)+len(discarded))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	if len(discarded) == 0 {
		return out, nil
	}
	for _, r := range discarded {
		out = append(out, r.domain())
	}
	slices.SortFunc(out, func(a, b Certificate) int {
		if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(a.Serial, b.Serial)
	})
	return out, nil
}

// RevokeCertificate marks a certificate revoked. Revoking an already revoked
// certificate keeps the first revocation's time and reason.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, reason int, at time.Time) error {
	res := s.db.WithContext(ctx).Model(&certRow{}).Where("serial = ? AND status <> ?", serial, string(CertRevoked)).
		Updates(map[string]any{"status": string(CertRevoked), "revoked_at": ms(at), "revocation_reason": reason})
	if res.Error != nil {
		return classify(res.Error, "certificate "+serial)
	}
	if res.RowsAffected == 0 {
		if _, err := s.GetCertificate(ctx, serial); err != nil {
			return err
		}
		return nil
	}
	s.notifyAfter(ctx, TopicDevices)
	return nil
}

// CreateAdminToken stores an admin API token's hash, and audit (when not
// nil) in the same transaction, its ObjectID set to the token's id.
func (s *Store) CreateAdminToken(ctx context.Context, t AdminToken, audit *AuditEvent) (AdminToken, error) {
	if t.ID == "" {
		t.ID = uuid.Must(uuid.NewV7()).String()
	}
	r := adminTokenRow{ID: t.ID, Name: t.Name, Hash: t.Hash, Role: t.Role, CreatedAt: ms(s.now())}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "admin token")
		}
		if audit == nil {
			return nil
		}
		e := *audit
		e.ObjectID = t.ID
		return s.appendAuditTx(tx, &e)
	})
	if err != nil {
		return AdminToken{}, err
	}
	return r.domain(), nil
}

// GetAdminTokenByHash finds an unrevoked admin token by its hash.
func (s *Store) GetAdminTokenByHash(ctx context.Context, hash string) (AdminToken, error) {
	var r adminTokenRow
	if err := s.db.WithContext(ctx).Where("hash = ? AND revoked_at IS NULL", hash).Take(&r).Error; err != nil {
		return AdminToken{}, classify(err, "admin token")
	}
	return r.domain(), nil
}

// CountAdminTokens counts unrevoked admin tokens.
func (s *Store) CountAdminTokens(ctx context.Context) (int, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&adminTokenRow{}).Where("revoked_at IS NULL").Count(&n).Error
	return int(n), classify(err, "admin tokens")
}

// AppendAudit records an audit event, in a transaction of its own (the
// chain's append reads the head and inserts atomically). ID and At are
// filled in when empty.
func (s *Store) AppendAudit(ctx context.Context, e AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error { return s.appendAuditTx(tx, &e) })
}

// appendAuditTx chains e onto the audit trail inside the gorm transaction
// tx; every audit write goes through appendAudit.
func (s *Store) appendAuditTx(tx *gorm.DB, e *AuditEvent) error {
	return s.appendAudit(tx.Statement.Context, gormExecer{tx}, e)
}

// auditRow fills in e's ID and At when empty and returns its row.
func (s *Store) auditRow(e *AuditEvent) auditRow {
	if e.ID == "" {
		e.ID = uuid.Must(uuid.NewV7()).String()
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	return auditRow{ID: e.ID, At: ms(e.At), Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType,
		ObjectID: e.ObjectID, Detail: e.Detail}
}

// ListAudit returns the newest audit events first.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	q := s.db.WithContext(ctx).Model(&auditRow{})
	if f.ObjectType != "" {
		q = q.Where("object_type = ?", f.ObjectType)
	}
	if f.ObjectID != "" {
		q = q.Where("object_id = ?", f.ObjectID)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		q = q.Where("at >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("at < ?", ms(f.Until))
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows []auditRow
	if err := q.Order("at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "audit events")
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}
