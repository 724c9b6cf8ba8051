package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func secs(v int64) time.Duration { return time.Duration(v) * time.Second }

// CreateFleet inserts a fleet and writes audit (when not nil) in the same
// transaction.
func (s *Store) CreateFleet(ctx context.Context, f Fleet, audit *AuditEvent) (Fleet, error) {
	now := s.now()
	r := fleetRow{Name: f.Name, Description: f.Description, CreatedAt: ms(now), UpdatedAt: ms(now)}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "fleet "+f.Name)
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Fleet{}, err
	}
	return r.domain(), nil
}

// GetFleet returns one fleet.
func (s *Store) GetFleet(ctx context.Context, name string) (Fleet, error) {
	var r fleetRow
	if err := s.db.WithContext(ctx).Where("name = ?", name).Take(&r).Error; err != nil {
		return Fleet{}, classify(err, "fleet "+name)
	}
	return r.domain(), nil
}

// ListFleets returns every fleet ordered by name.
func (s *Store) ListFleets(ctx context.Context) ([]Fleet, error) {
	var rows []fleetRow
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, classify(err, "fleets")
	}
	out := make([]Fleet, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// UpdateFleet changes a fleet's description, with its audit event.
func (s *Store) UpdateFleet(ctx context.Context, f Fleet, audit *AuditEvent) (Fleet, error) {
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&fleetRow{}).Where("name = ?", f.Name).
			Updates(map[string]any{"description": f.Description, "updated_at": ms(s.now())})
		if err := mustAffect(res, "fleet "+f.Name); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Fleet{}, err
	}
	return s.GetFleet(ctx, f.Name)
}

// DeleteFleet removes a fleet that no device or batch refers to, with its
// audit event.
func (s *Store) DeleteFleet(ctx context.Context, name string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		if err := mustAffect(tx.Where("name = ?", name).Delete(&fleetRow{}), "fleet "+name); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
}

// CreateProfile inserts a device profile, with its audit event.
func (s *Store) CreateProfile(ctx context.Context, p Profile, audit *AuditEvent) (Profile, error) {
	now := s.now()
	r := profileRow{Name: p.Name, KeyTypes: joinList(p.KeyTypes), Roles: joinList(p.Roles),
		ValiditySeconds: int64(p.Validity / time.Second), RenewWindowSeconds: int64(p.RenewWindow / time.Second),
		SupersededGraceSeconds:  int64(p.Grace() / time.Second),
		RenewAfterExpirySeconds: int64(p.AfterExpiry() / time.Second),
		ServerKeygen:            flag(p.KeygenOnServer()), DeviceIDFrom: p.IDFrom(),
		CreatedAt: ms(now), UpdatedAt: ms(now)}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "profile "+p.Name)
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Profile{}, err
	}
	return r.domain(), nil
}

// GetProfile returns one profile.
func (s *Store) GetProfile(ctx context.Context, name string) (Profile, error) {
	var r profileRow
	if err := s.db.WithContext(ctx).Where("name = ?", name).Take(&r).Error; err != nil {
		return Profile{}, classify(err, "profile "+name)
	}
	return r.domain(), nil
}

// ListProfiles returns every profile ordered by name.
func (s *Store) ListProfiles(ctx context.Context) ([]Profile, error) {
	var rows []profileRow
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, classify(err, "profiles")
	}
	out := make([]Profile, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// UpdateProfile replaces a profile's settings; a nil SupersededGrace,
// RenewAfterExpiry or ServerKeygen and an empty DeviceIDFrom keep the
// stored one. audit is written in the same transaction.
func (s *Store) UpdateProfile(ctx context.Context, p Profile, audit *AuditEvent) (Profile, error) {
	set := map[string]any{
		"key_types": joinList(p.KeyTypes), "roles": joinList(p.Roles),
		"validity_seconds":     int64(p.Validity / time.Second),
		"renew_window_seconds": int64(p.RenewWindow / time.Second),
		"updated_at":           ms(s.now()),
	}
	if p.SupersededGrace != nil {
		set["superseded_grace_seconds"] = int64(*p.SupersededGrace / time.Second)
	}
	if p.RenewAfterExpiry != nil {
		set["renew_after_expiry_seconds"] = int64(*p.RenewAfterExpiry / time.Second)
	}
	if p.ServerKeygen != nil {
		set["server_keygen"] = flag(*p.ServerKeygen)
	}
	if p.DeviceIDFrom != "" {
		set["device_id_from"] = p.DeviceIDFrom
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&profileRow{}).Where("name = ?", p.Name).Updates(set)
		if err := mustAffect(res, "profile "+p.Name); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Profile{}, err
	}
	return s.GetProfile(ctx, p.Name)
}

// DeleteProfile removes a profile that no device or batch refers to, with
// its audit event.
func (s *Store) DeleteProfile(ctx context.Context, name string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		if err := mustAffect(tx.Where("name = ?", name).Delete(&profileRow{}), "profile "+name); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
}

// sqlIDReservedElsewhere finds a live unused token of another fleet that
// fixes an id: a device pending in that other fleet could never be claimed
// by it (sqlClaimDevice matches the fleet), so it would squat the id.
const sqlIDReservedElsewhere = `SELECT 1 FROM bootstrap_tokens t JOIN token_batches b ON b.id = t.batch_id
WHERE t.device_id = ? AND t.used_at IS NULL AND t.expires_at > ? AND b.revoked_at IS NULL AND b.fleet <> ? LIMIT 1`

// CreateDevice registers a device (usually pending, before enrollment). A
// pending device may not take an id fixed to another fleet's unused token
// (device_id_reserved), the mirror of the check a batch makes
// (checkIDsFree); the shared reservation lock orders the two. audit is
// written in the same transaction.
func (s *Store) CreateDevice(ctx context.Context, d Device, audit *AuditEvent) (Device, error) {
	now := s.now()
	d.CreatedAt, d.UpdatedAt = now, now
	r := newDeviceRow(d)
	err := s.write(ctx, func(tx *gorm.DB) error {
		if d.Status == DevicePending {
			if s.postgres {
				if err := tx.Exec(sqlReservationShare, reservationLock).Error; err != nil {
					return classify(err, "device id reservations")
				}
			}
			var hits []int
			if err := tx.Raw(sqlIDReservedElsewhere, d.ID, ms(now), d.Fleet).Scan(&hits).Error; err != nil {
				return classify(err, "device id reservations")
			}
			if len(hits) > 0 {
				return fault.New(fault.DeviceIDReserved, "device id %q is fixed to an unused bootstrap token of another fleet", d.ID)
			}
		}
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "device "+d.ID)
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Device{}, err
	}
	return r.domain(), nil
}

// GetDevice returns one device.
func (s *Store) GetDevice(ctx context.Context, id string) (Device, error) {
	var r deviceRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return Device{}, classify(err, "device "+id)
	}
	return r.domain(), nil
}

// ListDevices pages through devices in id order. Pass the last id of a page
// as After to get the next; keyset paging stays fast at any depth.
func (s *Store) ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error) {
	q := s.db.WithContext(ctx).Model(&deviceRow{})
	if f.Fleet != "" {
		q = q.Where("fleet = ?", f.Fleet)
	}
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.Search != "" {
		// A prefix range instead of LIKE: it needs no escaping of % and _.
		// The range is a byte prefix only under a bytewise collation. SQLite
		// compares TEXT with BINARY; PostgreSQL uses the database's default
		// collation (en_US.UTF-8 or ICU on many installs, where "DEV-1" and
		// "dév-1" sort inside the range of "dev-1"), so there the comparison
		// is forced to "C". That skips the primary key index unless one on
		// (id COLLATE "C") exists; paging below keeps the column's own order.
		col := "id"
		if s.postgres {
			col = `id COLLATE "C"`
		}
		q = q.Where(col+" >= ? AND "+col+" < ?", f.Search, f.Search+"\U0010FFFF")
	}
	if f.LabelKey != "" {
		// Labels are stored as Go's JSON of a map: no spaces, every quote
		// inside a key or value escaped. So {"key":"value" or ,"key":"value"
		// occurs in the text only as that exact pair. A case-sensitive
		// substring test needs no LIKE escaping; it scans, as any label
		// query on a JSON text column does (FuzzLabelNeedle checks this).
		fn := "instr(labels, ?) > 0"
		if s.postgres {
			fn = "strpos(labels, ?) > 0"
		}
		needle := labelNeedle(f.LabelKey, f.LabelValue)
		q = q.Where("("+fn+" OR "+fn+")", "{"+needle, ","+needle)
	}
	if f.After != "" {
		q = q.Where("id > ?", f.After)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows []deviceRow
	if err := q.Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "devices")
	}
	out := make([]Device, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// UpdateDevice writes a device's profile, status and labels, with its
// audit event.
func (s *Store) UpdateDevice(ctx context.Context, d Device, audit *AuditEvent) (Device, error) {
	r := newDeviceRow(d)
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&deviceRow{}).Where("id = ?", d.ID).Updates(map[string]any{
			"profile": r.Profile, "status": r.Status, "labels": r.Labels, "updated_at": ms(s.now()),
		})
		if err := mustAffect(res, "device "+d.ID); err != nil {
			return err
		}
		if err := s.notify(tx, TopicDevices); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return Device{}, err
	}
	return s.GetDevice(ctx, d.ID)
}

// DeleteDevice removes a device that holds no certificate. A device that
// was ever issued a certificate is revoked, not deleted, so its history and
// CRL entries survive. audit is written in the same transaction.
func (s *Store) DeleteDevice(ctx context.Context, id string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		if err := mustAffect(tx.Where("id = ?", id).Delete(&deviceRow{}), "device "+id); err != nil {
			return err
		}
		if err := s.notify(tx, TopicDevices); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
}

func mustAffect(res *gorm.DB, what string) error {
	if res.Error != nil {
		return classify(res.Error, what)
	}
	if res.RowsAffected == 0 {
		return fault.New(fault.NotFound, "%s not found", what)
	}
	return nil
}
