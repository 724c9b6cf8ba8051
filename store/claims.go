package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Claims (migration 00012) close the gap between signing a certificate and
// recording it. A credential, a bootstrap token or the certificate a renewal
// replaces, is claimed before anything is signed, by one conditional UPDATE:
// of concurrent requests exactly one changes the row (PostgreSQL's UPDATE
// locks it and re-checks the condition on the committed version; SQLite has
// one writer). Only the holder signs, and its enrollment or renewal commits
// only while the claim is still its own. A claim whose holder died expires;
// a holder that outlived its claim fails to record and discards what it
// signed (DiscardCertificate), so no signed certificate goes unrecorded.
const (
	sqlClaimToken = `UPDATE bootstrap_tokens SET claim_id = ?, claim_until = ?
WHERE hash = ? AND used_at IS NULL AND expires_at > ? AND (claim_until IS NULL OR claim_until <= ?)
AND EXISTS (SELECT 1 FROM token_batches b WHERE b.id = bootstrap_tokens.batch_id AND b.revoked_at IS NULL)`
	sqlReleaseToken = `UPDATE bootstrap_tokens SET claim_id = NULL, claim_until = NULL
WHERE hash = ? AND claim_id = ? AND used_at IS NULL`
	sqlClaimRenewal = `UPDATE certificates SET renew_claim_id = ?, renew_claim_until = ?
WHERE serial = ? AND device_id = ? AND status = 'active' AND (renew_claim_until IS NULL OR renew_claim_until <= ?)`
	sqlReleaseRenewal = `UPDATE certificates SET renew_claim_id = NULL, renew_claim_until = NULL
WHERE serial = ? AND renew_claim_id = ? AND status = 'active'`
	// A certificate whose commit reported an error but went through (the
	// reply was lost, say) is recorded already, and stays as it is.
	sqlInsertDiscarded = `INSERT INTO discarded_certificates (serial, fingerprint, device_id, not_before, not_after, pem,
revoked_at, revocation_reason, cause, created_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM certificates WHERE serial = ?)
ON CONFLICT (serial) DO NOTHING`
	sqlDeviceFleet  = `SELECT status, fleet FROM devices WHERE id = ?`
	sqlGetDiscarded = `SELECT serial, fingerprint, device_id, not_before, not_after, pem, revoked_at, revocation_reason,
created_at FROM discarded_certificates WHERE serial = ?`
)

// ReasonDiscarded is RFC 5280's CRLReason cessationOfOperation: the
// certificate was signed for an enrollment or renewal that did not commit,
// and was never handed out.
const ReasonDiscarded = 5

// Claim is a claim on a credential: ID is the holder's random id, Until
// when it lapses unless used.
type Claim struct {
	ID    string
	Until time.Time
}

// TokenClaim is an enrollment's claim on its bootstrap token, with what the
// enrollment's commit will check about its device (Enrollment's fields of
// the same names), checked here already: an enrollment that is bound to be
// refused (an id enrolled already, or reserved for another token) must be
// refused before anything is signed, or each retry of it would sign and
// discard a certificate and grow the CRL.
type TokenClaim struct {
	Claim
	Hash string
	// DeviceID and Fleet name the device; an empty DeviceID skips the checks.
	DeviceID, Fleet             string
	ClaimPending, CheckReserved bool
}

// ClaimToken claims an unused, live bootstrap token of an unrevoked batch
// for one enrollment. A token that is used, or claimed by a live claim of
// another enrollment, is token_used (the caller tells the two apart by
// reading the token); expired and revoked are token_expired and
// token_revoked.
func (s *Store) ClaimToken(ctx context.Context, c TokenClaim, at time.Time) error {
	return s.writeSQL(ctx, func(ex execer) error {
		res, err := ex.ExecContext(ctx, sqlClaimToken, c.ID, ms(c.Until), c.Hash, ms(at), ms(at))
		if err != nil {
			return classify(err, "bootstrap token")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return classify(err, "bootstrap token")
		}
		if n != 1 {
			return tokenRefusal(ctx, ex, c.Hash, at, c.ID, false)
		}
		if c.DeviceID == "" {
			return nil
		}
		// An error rolls the claim back with the transaction.
		if c.CheckReserved {
			if err := s.checkNotReserved(ctx, ex, c.DeviceID, ms(at)); err != nil {
				return err
			}
		}
		return deviceEnrollable(ctx, ex, c)
	})
}

// deviceEnrollable refuses, as the commit would, an id taken by a device
// that the enrollment may not claim (only a pending device of its fleet,
// by a token fixed to its id).
func deviceEnrollable(ctx context.Context, ex execer, c TokenClaim) error {
	var status, fleet string
	err := ex.QueryRowContext(ctx, sqlDeviceFleet, c.DeviceID).Scan(&status, &fleet)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return classify(err, "device "+c.DeviceID)
	case c.ClaimPending && status == string(DevicePending) && fleet == c.Fleet:
		return nil
	default:
		return fault.New(fault.AlreadyExists, "device %s is already enrolled", c.DeviceID)
	}
}

// ReleaseTokenClaim gives up claim c on a token that was not used, so the
// enrollment may be retried at once. Releasing a claim that is not (or no
// longer) the caller's changes nothing.
func (s *Store) ReleaseTokenClaim(ctx context.Context, hash, claimID string) error {
	return s.writeSQL(ctx, func(ex execer) error {
		_, err := ex.ExecContext(ctx, sqlReleaseToken, hash, claimID)
		return classify(err, "bootstrap token")
	})
}

// ClaimRenewal claims the device's active certificate serial for one
// renewal. A certificate that is not active, not the device's, or claimed
// by a live claim of another renewal is certificate_invalid: this renewal
// lost to another one.
func (s *Store) ClaimRenewal(ctx context.Context, deviceID, serial string, c Claim, at time.Time) error {
	return s.writeSQL(ctx, func(ex execer) error {
		res, err := ex.ExecContext(ctx, sqlClaimRenewal, c.ID, ms(c.Until), serial, deviceID, ms(at))
		if err != nil {
			return classify(err, "certificate "+serial)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return classify(err, "certificate "+serial)
		}
		return fault.New(fault.CertInvalid, "certificate %s was already renewed or is being renewed", serial)
	})
}

// ReleaseRenewalClaim gives up claim c on a certificate that was not
// renewed, so the renewal may be retried at once.
func (s *Store) ReleaseRenewalClaim(ctx context.Context, serial, claimID string) error {
	return s.writeSQL(ctx, func(ex execer) error {
		_, err := ex.ExecContext(ctx, sqlReleaseRenewal, serial, claimID)
		return classify(err, "certificate "+serial)
	})
}

// ClaimRef names the claim an enrollment (TokenHash, or IDevIDKey) or a
// renewal (OldSerial) held while it signed; ID is the claim's id. An IDevID
// re-enrollment holds two with one id: the IDevID and OldSerial.
type ClaimRef struct {
	TokenHash, OldSerial, IDevIDKey, ID string
}

// DiscardCertificate records a certificate that was signed but whose
// enrollment or renewal did not commit, as revoked (ReasonDiscarded) at at,
// with audit (when not nil) in the same transaction. It is then on the CRL
// and GetCertificate reports it revoked. Discarding one twice keeps the
// first record, and a certificate that is recorded already is left alone.
//
// The claim (when ref.ID is set) is released first, in the same
// transaction: that write takes the credential's row, so a commit of the
// same enrollment or renewal still in flight (its error was a lost reply,
// say) finishes before the check for a recorded certificate runs, and a
// commit that comes after finds its claim gone and fails. Either way the
// certificate ends up recorded or discarded, never both.
func (s *Store) DiscardCertificate(ctx context.Context, c Certificate, cause string, at time.Time, ref ClaimRef, audit *AuditEvent) error {
	err := s.writeSQL(ctx, func(ex execer) error {
		if err := releaseClaim(ctx, ex, ref); err != nil {
			return err
		}
		if _, err := ex.ExecContext(ctx, sqlInsertDiscarded, c.Serial, c.Fingerprint, c.DeviceID, ms(c.NotBefore),
			ms(c.NotAfter), c.PEM, ms(at), ReasonDiscarded, cause, ms(s.now()), c.Serial); err != nil {
			return classify(err, "discarded certificate "+c.Serial)
		}
		return s.appendAudit(ctx, ex, audit)
	})
	if err == nil {
		s.notifyAfter(ctx, TopicDevices)
	}
	return err
}

// releaseClaim gives up ref's claims with ex.
func releaseClaim(ctx context.Context, ex execer, ref ClaimRef) error {
	if ref.ID == "" {
		return nil
	}
	if ref.TokenHash != "" {
		if _, err := ex.ExecContext(ctx, sqlReleaseToken, ref.TokenHash, ref.ID); err != nil {
			return classify(err, "bootstrap token")
		}
	}
	if ref.IDevIDKey != "" {
		if _, err := ex.ExecContext(ctx, sqlReleaseIDevID, ref.IDevIDKey, ref.ID); err != nil {
			return classify(err, "IDevID enrollment")
		}
	}
	if ref.OldSerial != "" {
		if _, err := ex.ExecContext(ctx, sqlReleaseRenewal, ref.OldSerial, ref.ID); err != nil {
			return classify(err, "certificate "+ref.OldSerial)
		}
	}
	return nil
}

// discarded returns the discarded certificate serial as a revoked
// Certificate, or not_found.
func (s *Store) discarded(ctx context.Context, serial string) (Certificate, error) {
	var (
		c                              Certificate
		notBefore, notAfter, createdAt int64
		revokedAt                      int64
	)
	err := s.queryRow(ctx, sqlGetDiscarded, serial).Scan(&c.Serial, &c.Fingerprint, &c.DeviceID, &notBefore, &notAfter,
		&c.PEM, &revokedAt, &c.RevocationReason, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fault.New(fault.NotFound, "certificate %s not found", serial)
	}
	if err != nil {
		return Certificate{}, classify(err, "certificate "+serial)
	}
	rev := fromMS(revokedAt)
	c.NotBefore, c.NotAfter, c.CreatedAt, c.RevokedAt = fromMS(notBefore), fromMS(notAfter), fromMS(createdAt), &rev
	c.Status, c.Discarded = CertRevoked, true
	return c, nil
}
