package store

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// challengeRow is one stored renewal challenge (migration 00010).
type challengeRow struct {
	Hash      string `gorm:"column:hash;primaryKey"`
	Serial    string `gorm:"column:serial"`
	ExpiresAt int64  `gorm:"column:expires_at"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
}

func (challengeRow) TableName() string { return "renewal_challenges" }

func (r challengeRow) domain() RenewalChallenge {
	return RenewalChallenge{Hash: r.Hash, Serial: r.Serial, ExpiresAt: fromMS(r.ExpiresAt), CreatedAt: fromMS(r.CreatedAt)}
}

// CreateRenewalChallenge stores a challenge and keeps at most keep live
// challenges per certificate, dropping the oldest. Anyone who has seen a
// certificate may ask for challenges, so neither the table nor one serial's
// share of it may grow without bound: expired challenges of every
// certificate are swept here too.
func (s *Store) CreateRenewalChallenge(ctx context.Context, c RenewalChallenge, keep int) error {
	if keep < 1 {
		keep = 1
	}
	now := ms(s.now())
	r := challengeRow{Hash: c.Hash, Serial: c.Serial, ExpiresAt: ms(c.ExpiresAt), CreatedAt: ms(c.CreatedAt)}
	return s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("expires_at <= ?", now).Delete(&challengeRow{}).Error; err != nil {
			return classify(err, "renewal challenges")
		}
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "renewal challenge")
		}
		newest := tx.Model(&challengeRow{}).Select("hash").Where("serial = ?", c.Serial).
			Order("created_at DESC, hash DESC").Limit(keep)
		err := tx.Where("serial = ? AND hash NOT IN (?)", c.Serial, newest).Delete(&challengeRow{}).Error
		return classify(err, "renewal challenges")
	})
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
