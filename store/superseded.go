package store

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// sqlRevokeSupersededDue revokes, with reason superseded, superseded
// certificates whose grace has ended. The outer "status = 'superseded'" is
// what makes it safe for replicas to run at once: on PostgreSQL a second
// replica's UPDATE waits for the first one's row locks and then re-checks
// the condition on the committed row, so every certificate is revoked (and
// audited) exactly once; SQLite has one writer.
const sqlRevokeSupersededDue = `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
WHERE status = 'superseded' AND serial IN (SELECT serial FROM certificates
WHERE status = 'superseded' AND revoke_after <= ? ORDER BY revoke_after LIMIT ?)
RETURNING serial, device_id, revoke_after`

// RevokeSupersededDue revokes with reason superseded (RFC 5280 code 4) up
// to limit superseded certificates whose grace ended at or before at, writes
// the audit event audit builds for each, and returns them as they were
// before (RevokeAfter set), all in one transaction.
func (s *Store) RevokeSupersededDue(ctx context.Context, at time.Time, limit int, audit func(Certificate) AuditEvent) ([]Certificate, error) {
	if limit <= 0 {
		limit = 500
	}
	var out []Certificate
	err := s.write(ctx, func(tx *gorm.DB) error {
		out = out[:0]
		rows, err := tx.Raw(sqlRevokeSupersededDue, ms(at), ReasonSuperseded, ms(at), limit).Rows()
		if err != nil {
			return classify(err, "superseded certificates")
		}
		for rows.Next() {
			var (
				c     Certificate
				after int64
			)
			if err := rows.Scan(&c.Serial, &c.DeviceID, &after); err != nil {
				_ = rows.Close()
				return classify(err, "superseded certificates")
			}
			c.Status, c.RevokeAfter = CertSuperseded, new(fromMS(after))
			out = append(out, c)
		}
		err = rows.Err()
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return classify(err, "superseded certificates")
		}
		if len(out) == 0 {
			return nil
		}
		if audit != nil {
			for _, c := range out {
				e := audit(c)
				if err := s.appendAuditTx(tx, &e); err != nil {
					return err
				}
			}
		}
		return s.notify(tx, TopicDevices)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
