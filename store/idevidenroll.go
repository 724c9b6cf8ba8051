package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// IDevID enrollments (migration 00018): a vendor IDevID is claimed before
// anything is signed with it, as a bootstrap token is (claims.go), and its
// enrollment commits the device, its certificate, the IDevID's record and
// the audit event in one transaction, only while the claim is its own. The
// claim is one conditional write (an upsert whose update is conditional),
// so of concurrent enrollments with one IDevID exactly one holds it: on
// PostgreSQL the second waits on the first's row or its uncommitted insert
// and re-checks the condition on what committed; SQLite has one writer.

// IDevIDRecord is what the store knows of one IDevID.
type IDevIDRecord struct {
	Key                  string
	Fleet, Vendor        string
	Issuer, IDevIDSerial string
	// DeviceID is the device it enrolled, CertSerial the certificate its
	// last (re-)enrollment issued, ActiveSerial the device's active
	// certificate now (a renewal may have replaced CertSerial); all empty
	// before the first enrollment commits.
	DeviceID, CertSerial, ActiveSerial string
	EnrolledAt                         *time.Time
	Enrollments                        int
	// ClaimUntil is when the claim on it lapses (nil: not claimed).
	ClaimUntil *time.Time
}

// Enrolled reports whether an enrollment with the IDevID committed.
func (r IDevIDRecord) Enrolled() bool { return r.DeviceID != "" }

// IDevIDClaim is an enrollment's claim on an IDevID.
type IDevIDClaim struct {
	Claim
	Key, Fleet, Vendor, Issuer, IDevIDSerial string
	// DeviceID is the device the enrollment is for. Reenroll: the IDevID
	// enrolled DeviceID before, and must still be recorded so; otherwise it
	// must not have enrolled, and DeviceID must be free (not a device, not
	// fixed to a live bootstrap token), as the commit will check.
	DeviceID string
	Reenroll bool
}

// IDevIDEnrollment is everything one IDevID enrollment writes, atomically.
type IDevIDEnrollment struct {
	Key    string
	Device Device
	Cert   Certificate
	At     time.Time
	// Reenroll: the device exists (it enrolled with this IDevID before) and
	// gets Cert as its new active certificate. OldSerial, when set, is its
	// active certificate, claimed for this enrollment with Claim
	// (ClaimRenewal): it is superseded as a renewal supersedes it.
	Reenroll  bool
	OldSerial string
	// Claim is the enrollment's claim on the IDevID (ClaimIDevID) and, on
	// a re-enrollment, on OldSerial; required.
	Claim string
	// Audit is written in the same transaction; the store appends the old
	// certificate's fate on a re-enrollment, as RecordRenewal does.
	Audit *AuditEvent
}

const (
	// sqlClaimIDevID claims an IDevID. A record no enrollment completed
	// (a first attempt that failed) is taken over whole: its fleet and
	// vendor become the claimer's, so the record names the registration
	// that enrolled the device, not the one that first tried.
	sqlClaimIDevID = `INSERT INTO idevid_enrollments (idevid_key, fleet, vendor, issuer, idevid_serial, claim_id, claim_until, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idevid_key) DO UPDATE SET claim_id = excluded.claim_id, claim_until = excluded.claim_until,
fleet = CASE WHEN COALESCE(idevid_enrollments.device_id, '') = '' THEN excluded.fleet ELSE idevid_enrollments.fleet END,
vendor = CASE WHEN COALESCE(idevid_enrollments.device_id, '') = '' THEN excluded.vendor ELSE idevid_enrollments.vendor END,
issuer = CASE WHEN COALESCE(idevid_enrollments.device_id, '') = '' THEN excluded.issuer ELSE idevid_enrollments.issuer END,
idevid_serial = CASE WHEN COALESCE(idevid_enrollments.device_id, '') = '' THEN excluded.idevid_serial ELSE idevid_enrollments.idevid_serial END
WHERE (idevid_enrollments.claim_until IS NULL OR idevid_enrollments.claim_until <= ?)
AND COALESCE(idevid_enrollments.device_id, '') = ?`
	sqlReleaseIDevID = `UPDATE idevid_enrollments SET claim_id = NULL, claim_until = NULL
WHERE idevid_key = ? AND claim_id = ?`
	sqlCommitIDevID = `UPDATE idevid_enrollments SET device_id = ?, cert_serial = ?, enrolled_at = ?,
enrollments = enrollments + 1, claim_id = NULL, claim_until = NULL
WHERE idevid_key = ? AND claim_id = ? AND COALESCE(device_id, '') = ?`
	sqlGetIDevID = `SELECT e.idevid_key, e.fleet, e.vendor, e.issuer, e.idevid_serial, e.device_id, e.cert_serial,
e.enrolled_at, e.enrollments, e.claim_until,
(SELECT c.serial FROM certificates c WHERE c.device_id = e.device_id AND c.status = 'active'
 ORDER BY c.not_before DESC, c.serial LIMIT 1)
FROM idevid_enrollments e WHERE e.idevid_key = ?`
	sqlDeviceRow = `SELECT id, fleet, profile, status, labels, created_at, updated_at FROM devices WHERE id = ?`
	// sqlDeviceRowLocked is sqlDeviceRow taking the row, as RecordRenewal
	// does: a revocation or suspension updates it first, so it either
	// commits before this re-enrollment (which then sees it) or waits for
	// it and then revokes the new certificate too.
	sqlDeviceRowLocked = sqlDeviceRow + ` FOR UPDATE`
	sqlProfileGrace    = `SELECT superseded_grace_seconds FROM profiles WHERE name = ?`
	// The certificate a re-enrollment replaces, superseded as by
	// RecordRenewal, only with the enrollment's claim on it (ClaimRenewal).
	sqlSupersedeCert = `UPDATE certificates SET status = 'superseded', revoke_after = ?
WHERE serial = ? AND device_id = ? AND status = 'active' AND COALESCE(renew_claim_id, '') = ?`
	sqlSupersedeRevoke = `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
WHERE serial = ? AND device_id = ? AND status = 'active' AND COALESCE(renew_claim_id, '') = ?`
	sqlCertRow = `SELECT serial, fingerprint, device_id, not_before, not_after, status, pem, revoked_at, revocation_reason,
created_at, revoke_after FROM certificates WHERE serial = ?`
)

// ClaimIDevID claims an IDevID for one enrollment. A claim held by a live
// claim of another enrollment, or an IDevID whose record is not what the
// claim expects (enrolled already, or, for a re-enrollment, no longer
// enrolled to that device), is conflict: the caller reads the record
// (GetIDevIDEnrollment) to tell which. For a first enrollment the device
// id is checked as the commit will check it (already_exists,
// device_id_reserved), before anything is signed.
func (s *Store) ClaimIDevID(ctx context.Context, c IDevIDClaim, at time.Time) error {
	if c.ID == "" || c.Key == "" || c.DeviceID == "" {
		return fault.New(fault.InvalidArgument, "an IDevID claim needs its id, the IDevID's key and the device id")
	}
	expect := ""
	if c.Reenroll {
		expect = c.DeviceID
	}
	return s.writeSQL(ctx, func(ex execer) error {
		res, err := ex.ExecContext(ctx, sqlClaimIDevID, c.Key, c.Fleet, c.Vendor, c.Issuer, c.IDevIDSerial, c.ID,
			ms(c.Until), ms(s.now()), ms(at), expect)
		if err != nil {
			return classify(err, "IDevID enrollment")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return classify(err, "IDevID enrollment")
		}
		if n != 1 {
			return fault.New(fault.Conflict, "this IDevID is enrolled already or being enrolled by another request")
		}
		if c.Reenroll {
			return nil
		}
		// An error rolls the claim back with the transaction.
		if err := s.checkNotReserved(ctx, ex, c.DeviceID, ms(at)); err != nil {
			return err
		}
		return deviceEnrollable(ctx, ex, TokenClaim{DeviceID: c.DeviceID, Fleet: c.Fleet})
	})
}

// ReleaseIDevIDClaim gives up claim claimID on an IDevID whose enrollment
// did not commit. Releasing a claim that is not (or no longer) the
// caller's changes nothing.
func (s *Store) ReleaseIDevIDClaim(ctx context.Context, key, claimID string) error {
	return s.writeSQL(ctx, func(ex execer) error {
		_, err := ex.ExecContext(ctx, sqlReleaseIDevID, key, claimID)
		return classify(err, "IDevID enrollment")
	})
}

// GetIDevIDEnrollment returns the record of the IDevID key, or not_found
// when it never tried to enroll.
func (s *Store) GetIDevIDEnrollment(ctx context.Context, key string) (IDevIDRecord, error) {
	var (
		r                               IDevIDRecord
		deviceID, certSerial, activeSer *string
		enrolledAt, claimUntil          *int64
	)
	err := s.queryRow(ctx, sqlGetIDevID, key).Scan(&r.Key, &r.Fleet, &r.Vendor, &r.Issuer, &r.IDevIDSerial,
		&deviceID, &certSerial, &enrolledAt, &r.Enrollments, &claimUntil, &activeSer)
	if errors.Is(err, sql.ErrNoRows) {
		return IDevIDRecord{}, fault.New(fault.NotFound, "IDevID has not enrolled")
	}
	if err != nil {
		return IDevIDRecord{}, classify(err, "IDevID enrollment")
	}
	r.DeviceID, r.CertSerial, r.ActiveSerial = deref(deviceID), deref(certSerial), deref(activeSer)
	r.EnrolledAt, r.ClaimUntil = fromOptMS(enrolledAt), fromOptMS(claimUntil)
	return r, nil
}

// CompleteIDevIDEnrollment records an IDevID enrollment in one
// transaction: the IDevID's record (only with the enrollment's claim), the
// device (created; or, re-enrolling, the existing active one), its new
// certificate, the superseded old one, and the audit event. It returns the
// device and, on a re-enrollment with OldSerial, the old certificate as it
// now is (superseded, or revoked when its profile's grace is 0: the caller
// then has the CRL republished).
func (s *Store) CompleteIDevIDEnrollment(ctx context.Context, e IDevIDEnrollment) (IDevIDEnrolled, error) {
	if e.Claim == "" {
		return IDevIDEnrolled{}, fault.New(fault.InvalidArgument, "an IDevID enrollment commits only with its claim")
	}
	var out IDevIDEnrolled
	err := s.writeSQL(ctx, func(ex execer) error {
		var err error
		out.Device, out.Old, err = s.idevidTx(ctx, ex, e)
		return err
	})
	if err != nil {
		return IDevIDEnrolled{}, err
	}
	return out, nil
}

// IDevIDEnrolled is a committed IDevID enrollment: the device and, after a
// re-enrollment, the certificate it replaced as it now is.
type IDevIDEnrolled struct {
	Device Device
	Old    Certificate
}

func (s *Store) idevidTx(ctx context.Context, ex execer, e IDevIDEnrollment) (Device, Certificate, error) {
	at := ms(e.At)
	expect := ""
	if e.Reenroll {
		expect = e.Device.ID
	}
	// First, so that on PostgreSQL the IDevID's row is held to commit: a
	// discard of this enrollment's certificate (DiscardCertificate) takes
	// it too, and runs either before (this commit then fails) or after.
	res, err := ex.ExecContext(ctx, sqlCommitIDevID, e.Device.ID, e.Cert.Serial, at, e.Key, e.Claim, expect)
	if err != nil {
		return Device{}, Certificate{}, classify(err, "IDevID enrollment")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err != nil {
			return Device{}, Certificate{}, classify(err, "IDevID enrollment")
		}
		return Device{}, Certificate{}, fault.New(fault.Conflict,
			"this enrollment's claim on the IDevID lapsed, or the IDevID enrolled meanwhile; retry")
	}
	var (
		dev Device
		old Certificate
	)
	if e.Reenroll {
		if dev, old, err = s.reenrollDevice(ctx, ex, e); err != nil {
			return Device{}, Certificate{}, err
		}
	} else {
		if err := s.checkNotReserved(ctx, ex, e.Device.ID, at); err != nil {
			return Device{}, Certificate{}, err
		}
		if dev, err = upsertEnrolledDevice(ctx, ex, e.Device, e.At, false); err != nil {
			return Device{}, Certificate{}, err
		}
	}
	c := newCertRow(e.Cert)
	c.CreatedAt = at
	c.Status = string(CertActive)
	insertCert := sqlInsertCert
	if s.postgres {
		insertCert = sqlInsertCertNotify
	}
	if _, err := ex.ExecContext(ctx, insertCert, c.Serial, c.Fingerprint, c.DeviceID, c.NotBefore, c.NotAfter,
		c.Status, c.PEM, c.RevokedAt, c.RevocationReason, c.CreatedAt); err != nil {
		return Device{}, Certificate{}, classify(err, "certificate "+e.Cert.Serial)
	}
	if e.Audit != nil {
		a := *e.Audit
		switch {
		case old.Status == CertRevoked:
			a.Detail += fmt.Sprintf(" old=%s old_revoked=superseded(%d)", old.Serial, ReasonSuperseded)
		case old.RevokeAfter != nil:
			a.Detail += " old=" + old.Serial + " old_revoked_after=" + old.RevokeAfter.UTC().Format(time.RFC3339)
		}
		// Last: on PostgreSQL the audit chain's lock is held only from here.
		if err := s.appendAudit(ctx, ex, &a); err != nil {
			return Device{}, Certificate{}, err
		}
	}
	return dev, old, nil
}

// reenrollDevice checks, under the device row's lock, that the
// re-enrolling device is active and of the enrollment's fleet, and
// supersedes its active certificate e.OldSerial (when set) as a renewal
// does: after its profile's superseded grace, or at once with a grace of 0.
func (s *Store) reenrollDevice(ctx context.Context, ex execer, e IDevIDEnrollment) (Device, Certificate, error) {
	q := sqlDeviceRow
	if s.postgres {
		q = sqlDeviceRowLocked
	}
	var d deviceRow
	err := ex.QueryRowContext(ctx, q, e.Device.ID).Scan(&d.ID, &d.Fleet, &d.Profile, &d.Status, &d.Labels, &d.CreatedAt, &d.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, Certificate{}, fault.New(fault.NotFound, "device %s not found", e.Device.ID)
	}
	if err != nil {
		return Device{}, Certificate{}, classify(err, "device "+e.Device.ID)
	}
	switch {
	case d.Status != string(DeviceActive):
		return Device{}, Certificate{}, fault.New(fault.DeviceNotActive, "device %s is %s", d.ID, d.Status)
	case d.Fleet != e.Device.Fleet:
		return Device{}, Certificate{}, fault.New(fault.Conflict, "device %s moved to fleet %s", d.ID, d.Fleet)
	}
	if e.OldSerial == "" {
		return d.domain(), Certificate{}, nil
	}
	var grace int64
	if err := ex.QueryRowContext(ctx, sqlProfileGrace, d.Profile).Scan(&grace); err != nil {
		return Device{}, Certificate{}, classify(err, "profile "+d.Profile)
	}
	now := s.now()
	var res sql.Result
	if grace == 0 {
		res, err = ex.ExecContext(ctx, sqlSupersedeRevoke, ms(now), ReasonSuperseded, e.OldSerial, d.ID, e.Claim)
	} else {
		res, err = ex.ExecContext(ctx, sqlSupersedeCert, ms(now)+grace*1000, e.OldSerial, d.ID, e.Claim)
	}
	if err != nil {
		return Device{}, Certificate{}, classify(err, "certificate "+e.OldSerial)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err != nil {
			return Device{}, Certificate{}, classify(err, "certificate "+e.OldSerial)
		}
		return Device{}, Certificate{}, fault.New(fault.Conflict, "certificate %s is no longer the device's current certificate; retry", e.OldSerial)
	}
	var c certRow
	if err := ex.QueryRowContext(ctx, sqlCertRow, e.OldSerial).Scan(&c.Serial, &c.Fingerprint, &c.DeviceID, &c.NotBefore,
		&c.NotAfter, &c.Status, &c.PEM, &c.RevokedAt, &c.RevocationReason, &c.CreatedAt, &c.RevokeAfter); err != nil {
		return Device{}, Certificate{}, classify(err, "certificate "+e.OldSerial)
	}
	return d.domain(), c.domain(), nil
}
