package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// RestoredRevocations counts what RecordRestoredRevocations wrote.
type RestoredRevocations struct {
	Known   int // certificates of the restored database marked revoked
	Unknown int // serials it never saw, recorded with no device
}

// RecordRestoredRevocations records the entries of the last CRL an
// installation published before it was restored from an older backup:
// a certificate the database holds is marked revoked (an earlier
// revocation keeps its time and reason); a serial it does not hold (issued
// after the backup) is kept in restored_revocations, which the CRL lists
// until its NotAfter. One transaction: a failed restore records nothing.
func (s *Store) RecordRestoredRevocations(ctx context.Context, entries []RevokedCert) (RestoredRevocations, error) {
	var out RestoredRevocations
	err := s.write(ctx, func(tx *gorm.DB) error {
		out = RestoredRevocations{}
		for _, e := range entries {
			known, err := restoreRevocation(tx, e)
			if err != nil {
				return err
			}
			if known {
				out.Known++
			} else {
				out.Unknown++
			}
		}
		return nil
	})
	if err != nil {
		return RestoredRevocations{}, classify(err, "restored revocations")
	}
	return out, nil
}

func restoreRevocation(tx *gorm.DB, e RevokedCert) (known bool, err error) {
	var n int64
	if err := tx.Model(&certRow{}).Where("serial = ?", e.Serial).Count(&n).Error; err != nil {
		return false, err
	}
	if n > 0 {
		return true, tx.Model(&certRow{}).Where("serial = ? AND status <> ?", e.Serial, string(CertRevoked)).
			Updates(map[string]any{"status": string(CertRevoked), "revoked_at": ms(e.RevokedAt), "revocation_reason": e.Reason}).Error
	}
	return false, tx.Exec(`INSERT INTO restored_revocations (serial, revoked_at, revocation_reason, not_after) VALUES (?, ?, ?, ?)
ON CONFLICT (serial) DO NOTHING`, e.Serial, ms(e.RevokedAt), e.Reason, ms(e.NotAfter)).Error
}

const sqlGetRestored = `SELECT serial, revoked_at, revocation_reason, not_after FROM restored_revocations WHERE serial = ?`

// RestoredRevocation returns the revocation a restore recorded for a
// serial the restored database never saw (RecordRestoredRevocations), or
// fault.NotFound. OCSP answers such a serial revoked: it is on every CRL.
func (s *Store) RestoredRevocation(ctx context.Context, serial string) (RevokedCert, error) {
	var (
		r                   RevokedCert
		revokedAt, notAfter int64
	)
	err := s.queryRow(ctx, sqlGetRestored, serial).Scan(&r.Serial, &revokedAt, &r.Reason, &notAfter)
	if errors.Is(err, sql.ErrNoRows) {
		return RevokedCert{}, fault.New(fault.NotFound, "no restored revocation of %s", serial)
	}
	if err != nil {
		return RevokedCert{}, classify(err, "restored revocation "+serial)
	}
	r.RevokedAt, r.NotAfter = fromMS(revokedAt), fromMS(notAfter)
	return r, nil
}

// SpendUnusedTokens marks every unused bootstrap token used at at, by no
// device and for no certificate, so that it enrolls nothing: a restore
// cannot know which tokens were spent after its backup was taken, and a
// spent token that enrolled again would mint a second identity. It
// returns how many it marked.
func (s *Store) SpendUnusedTokens(ctx context.Context, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).Where("used_at IS NULL").Updates(map[string]any{"used_at": ms(at), "used_by": ""})
		n = res.RowsAffected
		return res.Error
	})
	return int(n), classify(err, "bootstrap tokens")
}
