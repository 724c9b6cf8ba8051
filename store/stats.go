package store

import (
	"context"
	"encoding/json"
	"time"
)

// DeviceCount is how many devices of one fleet have one status.
type DeviceCount struct {
	Fleet  string
	Status DeviceStatus
	Count  int64
}

// CountDevices counts devices per fleet and status in one GROUP BY, which
// the devices (fleet, status) index answers without reading a device row.
func (s *Store) CountDevices(ctx context.Context) ([]DeviceCount, error) {
	var rows []struct {
		Fleet  string
		Status string
		N      int64
	}
	if err := s.db.WithContext(ctx).Model(&deviceRow{}).Select("fleet, status, COUNT(*) AS n").
		Group("fleet, status").Order("fleet, status").Scan(&rows).Error; err != nil {
		return nil, classify(err, "device counts")
	}
	out := make([]DeviceCount, len(rows))
	for i, r := range rows {
		out[i] = DeviceCount{Fleet: r.Fleet, Status: DeviceStatus(r.Status), Count: r.N}
	}
	return out, nil
}

// ExpiringCertificates returns active certificates whose not_after is before
// before, soonest first, at most limit (default and cap 1000).
//
// It scans the certificates table: the dashboard asks rarely, and an index
// on not_after costs every enrollment a page write (see migration 00003).
func (s *Store) ExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]Certificate, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var rows []certRow
	if err := s.db.WithContext(ctx).Where("status = ? AND not_after < ?", string(CertActive), ms(before)).
		Order("not_after, serial").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "certificates")
	}
	out := make([]Certificate, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// DiscardedCertificates returns the discarded certificates
// (DiscardCertificate), the latest discarded first, at most limit (default and cap
// 1000): those of a first enrollment that failed belong to no device, so
// no device's list shows them.
func (s *Store) DiscardedCertificates(ctx context.Context, limit int) ([]Certificate, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var rows []discardedRow
	if err := s.db.WithContext(ctx).Order("revoked_at DESC, serial").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "discarded certificates")
	}
	out := make([]Certificate, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// labelNeedle is the pair as Go's JSON writes it. A device's stored labels
// hold the label exactly when they contain it right after "{" or ",": only
// there does an unescaped quote open a key.
func labelNeedle(key, value string) string {
	k, _ := json.Marshal(key) // a string always marshals
	v, _ := json.Marshal(value)
	return string(k) + ":" + string(v)
}
