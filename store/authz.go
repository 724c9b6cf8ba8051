package store

import (
	"context"
	"time"
)

// DeviceWithCert is a device and its current (active) certificate, if any:
// what the authorization core keeps in memory.
type DeviceWithCert struct {
	Device
	Cert *Certificate
}

// DevicesChangedSince returns every device whose row or certificates changed
// after since (all devices for a zero since), each with its newest active
// certificate, and the high-water mark to pass next time. Replicas poll it
// so a change made through any replica reaches every decision core.
func (s *Store) DevicesChangedSince(ctx context.Context, since time.Time) ([]DeviceWithCert, time.Time, error) {
	// Read the clock before the queries: a change committed while they run is
	// seen again next time rather than missed.
	mark := s.now()
	db := s.db.WithContext(ctx)
	var devRows []deviceRow
	q := db.Model(&deviceRow{})
	if !since.IsZero() {
		cut := ms(since)
		q = q.Where("updated_at > ? OR id IN (?)", cut,
			db.Model(&certRow{}).Select("device_id").Where("created_at > ? OR revoked_at > ?", cut, cut))
	}
	if err := q.Order("id").Find(&devRows).Error; err != nil {
		return nil, since, classify(err, "devices")
	}
	if len(devRows) == 0 {
		return nil, mark, nil
	}
	var certRows []certRow
	if since.IsZero() {
		if err := db.Where("status = ?", string(CertActive)).Find(&certRows).Error; err != nil {
			return nil, since, classify(err, "certificates")
		}
	} else {
		// Chunked: both backends cap bind parameters per statement.
		for start := 0; start < len(devRows); start += 500 {
			end := min(start+500, len(devRows))
			ids := make([]string, 0, end-start)
			for _, r := range devRows[start:end] {
				ids = append(ids, r.ID)
			}
			var part []certRow
			if err := db.Where("status = ? AND device_id IN ?", string(CertActive), ids).Find(&part).Error; err != nil {
				return nil, since, classify(err, "certificates")
			}
			certRows = append(certRows, part...)
		}
	}
	current := make(map[string]Certificate, len(certRows))
	for _, r := range certRows {
		if cur, ok := current[r.DeviceID]; !ok || r.NotAfter > ms(cur.NotAfter) {
			current[r.DeviceID] = r.domain()
		}
	}
	out := make([]DeviceWithCert, len(devRows))
	for i, r := range devRows {
		out[i] = DeviceWithCert{Device: r.domain()}
		if c, ok := current[r.ID]; ok {
			out[i].Cert = &c
		}
	}
	return out, mark, nil
}
