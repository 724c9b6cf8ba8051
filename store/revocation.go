package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// RevokeDevice marks a device revoked and revokes every certificate it
// holds that is not revoked yet, with one reason and time, and writes the
// audit event, in one transaction. It returns the revoked serials; revoking
// a revoked device revokes nothing and is not an error.
func (s *Store) RevokeDevice(ctx context.Context, id string, reason int, at time.Time, audit *AuditEvent) ([]string, error) {
	var serials []string
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&deviceRow{}).Where("id = ?", id).
			Updates(map[string]any{"status": string(DeviceRevoked), "updated_at": ms(at)})
		if err := mustAffect(res, "device "+id); err != nil {
			return err
		}
		if err := tx.Model(&certRow{}).Where("device_id = ? AND status <> ?", id, string(CertRevoked)).
			Pluck("serial", &serials).Error; err != nil {
			return classify(err, "certificates")
		}
		if len(serials) > 0 {
			if err := tx.Model(&certRow{}).Where("device_id = ? AND status <> ?", id, string(CertRevoked)).
				Updates(map[string]any{"status": string(CertRevoked), "revoked_at": ms(at), "revocation_reason": reason}).Error; err != nil {
				return classify(err, "certificates")
			}
		}
		if err := s.notify(tx, TopicDevices); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	return serials, err
}

// TransitionDevice moves a device from one of the from states to to (e.g.
// active → suspended), with its audit event, atomically. A device in another
// state is a conflict, reported with its current state.
func (s *Store) TransitionDevice(ctx context.Context, id string, from []DeviceStatus, to DeviceStatus, at time.Time, audit *AuditEvent) (Device, error) {
	var out Device
	err := s.write(ctx, func(tx *gorm.DB) error {
		froms := make([]string, len(from))
		for i, f := range from {
			froms[i] = string(f)
		}
		res := tx.Model(&deviceRow{}).Where("id = ? AND status IN ?", id, froms).
			Updates(map[string]any{"status": string(to), "updated_at": ms(at)})
		if res.Error != nil {
			return classify(res.Error, "device "+id)
		}
		var r deviceRow
		if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
			return classify(err, "device "+id)
		}
		if res.RowsAffected == 0 {
			return fault.New(fault.Conflict, "device %s is %s", id, r.Status)
		}
		out = r.domain()
		if err := s.notify(tx, TopicDevices); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	return out, err
}
