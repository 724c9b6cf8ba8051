package store

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// challengeRow is one stored renewal challenge (migration 00010).
type challengeRow struct {
	Hash      string `gorm:"column:hash;primaryKey"`
	Nonce     string `gorm:"column:nonce"`
	Serial    string `gorm:"column:serial"`
	ExpiresAt int64  `gorm:"column:expires_at"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
}

func (challengeRow) TableName() string { return "renewal_challenges" }

func (r challengeRow) domain() RenewalChallenge {
	return RenewalChallenge{Hash: r.Hash, Nonce: r.Nonce, Serial: r.Serial, ExpiresAt: fromMS(r.ExpiresAt),
		CreatedAt: fromMS(r.CreatedAt)}
}

// challengeLock is the class of the PostgreSQL advisory locks, one per
// serial, that serialise issuing a certificate's challenges: without it,
// concurrent askers each find no live challenge and each store one.
const challengeLock = 0x67686331 // "ghc1"

// CreateRenewalChallenge hands out the certificate's live challenge that
// expires after reuseUntil, or else stores c and returns it. Anyone who has
// seen a certificate may ask for its challenges, so asking must neither
// take the device's challenge away nor grow the table: every asker gets
// the same live nonce (no secret: it is worthless without the key), a new
// one is stored only once the live one is near its end (the older stays
// redeemable until it expires), at most keep per certificate are kept
// (dropping the oldest; with reuse, never more than a few are live), and
// expired challenges of every certificate are swept here too.
func (s *Store) CreateRenewalChallenge(ctx context.Context, c RenewalChallenge, keep int, reuseUntil time.Time) (RenewalChallenge, error) {
	if keep < 1 {
		keep = 1
	}
	now := ms(s.now())
	r := challengeRow{Hash: c.Hash, Nonce: c.Nonce, Serial: c.Serial, ExpiresAt: ms(c.ExpiresAt), CreatedAt: ms(c.CreatedAt)}
	live := func(tx *gorm.DB) (challengeRow, bool, error) {
		var rows []challengeRow
		err := tx.Where("serial = ? AND expires_at > ?", c.Serial, ms(reuseUntil)).
			Order("expires_at DESC, hash").Limit(1).Find(&rows).Error
		if err != nil || len(rows) == 0 {
			return challengeRow{}, false, classify(err, "renewal challenges")
		}
		return rows[0], true, nil
	}
	// Most askers find the live one: a read, without taking the writer.
	if got, ok, err := live(s.db.WithContext(ctx)); err != nil || ok {
		return got.domain(), err
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if s.postgres {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?, hashtext(?))", challengeLock, c.Serial).Error; err != nil {
				return classify(err, "renewal challenges")
			}
		}
		got, ok, err := live(tx)
		if err != nil {
			return err
		}
		if ok {
			r = got
			return nil
		}
		if err := tx.Where("expires_at <= ?", now).Delete(&challengeRow{}).Error; err != nil {
			return classify(err, "renewal challenges")
		}
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "renewal challenge")
		}
		newest := tx.Model(&challengeRow{}).Select("hash").Where("serial = ?", c.Serial).
			Order("created_at DESC, hash DESC").Limit(keep)
		err = tx.Where("serial = ? AND hash NOT IN (?)", c.Serial, newest).Delete(&challengeRow{}).Error
		return classify(err, "renewal challenges")
	})
	if err != nil {
		return RenewalChallenge{}, err
	}
	return r.domain(), nil
}

// GetRenewalChallenge returns a stored challenge by hash (not_found when
// unknown or already redeemed).
func (s *Store) GetRenewalChallenge(ctx context.Context, hash string) (RenewalChallenge, error) {
	var r challengeRow
	if err := s.db.WithContext(ctx).Where("hash = ?", hash).Take(&r).Error; err != nil {
		return RenewalChallenge{}, classify(err, "renewal challenge")
	}
	return r.domain(), nil
}

// redeemChallenge deletes a live challenge issued for serial, inside the
// renewal's transaction; the conditional DELETE is what makes it single
// use. When nothing was deleted it says why, with a stable code.
func (s *Store) redeemChallenge(tx *gorm.DB, hash, serial string) error {
	now := ms(s.now())
	res := tx.Where("hash = ? AND serial = ? AND expires_at > ?", hash, serial, now).Delete(&challengeRow{})
	if res.Error != nil {
		return classify(res.Error, "renewal challenge")
	}
	if res.RowsAffected == 1 {
		return nil
	}
	var r challengeRow
	err := tx.Where("hash = ?", hash).Take(&r).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fault.New(fault.ChallengeInvalid, "renewal challenge is unknown or was already used")
	case err != nil:
		return classify(err, "renewal challenge")
	case r.Serial != serial:
		return fault.New(fault.ChallengeInvalid, "renewal challenge was issued for another certificate")
	default:
		return fault.New(fault.ChallengeExpired, "renewal challenge has expired; ask for a new one")
	}
}
