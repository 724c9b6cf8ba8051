package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// KickStatus is the delivery state of a session kick.
type KickStatus string

// Kick states. A failed kick exhausted its fast retries; it is still retried
// slowly and stays visible until a delivery succeeds.
const (
	KickPending KickStatus = "pending"
	KickDone    KickStatus = "done"
	KickFailed  KickStatus = "failed"
	// KickCancelled: the device was reinstated before delivery succeeded;
	// cutting its new sessions later would be wrong.
	KickCancelled KickStatus = "cancelled"
)

// Valid reports whether s is a known kick status.
func (s KickStatus) Valid() bool {
	return s == KickPending || s == KickDone || s == KickFailed || s == KickCancelled
}

// SessionKick is the latest request to cut one device's sessions on one
// broker, and how its delivery went.
type SessionKick struct {
	DeviceID string
	Broker   string
	Reason   string
	Status   KickStatus
	// Generation counts the requests for this (device, broker); a claim
	// reports it and the outcome is recorded only for the same generation.
	Generation    int64
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
	RequestedAt   time.Time
	DoneAt        *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// KickFilter narrows ListKicks.
type KickFilter struct {
	Status KickStatus // "" = any
	Limit  int        // default 100, at most 1000
}

type kickRow struct {
	DeviceID      string `gorm:"column:device_id;primaryKey"`
	Broker        string `gorm:"column:broker;primaryKey"`
	Reason        string `gorm:"column:reason"`
	Status        string `gorm:"column:status"`
	Generation    int64  `gorm:"column:generation"`
	Attempts      int    `gorm:"column:attempts"`
	LastError     string `gorm:"column:last_error"`
	NextAttemptAt int64  `gorm:"column:next_attempt_at"`
	LeaseUntil    int64  `gorm:"column:lease_until"`
	RequestedAt   int64  `gorm:"column:requested_at"`
	DoneAt        *int64 `gorm:"column:done_at"`
	CreatedAt     int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt     int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (kickRow) TableName() string { return "session_kicks" }

func (r kickRow) domain() SessionKick {
	return SessionKick{DeviceID: r.DeviceID, Broker: r.Broker, Reason: r.Reason, Status: KickStatus(r.Status),
		Generation: r.Generation, Attempts: r.Attempts, LastError: r.LastError, NextAttemptAt: fromMS(r.NextAttemptAt),
		RequestedAt: fromMS(r.RequestedAt), DoneAt: fromOptMS(r.DoneAt), CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
}

// kickUpsert inserts a pending kick or turns the existing row for the pair
// into a fresh pending request: new generation, attempts reset, lease
// dropped (a worker still delivering the previous generation may finish,
// which is harmless; its outcome is then ignored).
const kickUpsert = `INSERT INTO session_kicks
 (device_id, broker, reason, status, generation, attempts, last_error, next_attempt_at, lease_until, requested_at, done_at, created_at, updated_at)
 VALUES (?, ?, ?, 'pending', 1, 0, '', ?, 0, ?, NULL, ?, ?)
 ON CONFLICT (device_id, broker) DO UPDATE SET
  reason = excluded.reason, status = 'pending', generation = session_kicks.generation + 1, attempts = 0,
  last_error = '', next_attempt_at = excluded.next_attempt_at, lease_until = 0,
  requested_at = excluded.requested_at, done_at = NULL, updated_at = excluded.updated_at`

// EnqueueKicks records a request, due at once, to cut deviceID's sessions
// on each broker, in one transaction.
func (s *Store) EnqueueKicks(ctx context.Context, deviceID, reason string, brokers []string, at time.Time) error {
	if deviceID == "" {
		return fault.New(fault.InvalidArgument, "a session kick needs a device id")
	}
	if len(brokers) == 0 {
		return nil
	}
	now := ms(at)
	return s.write(ctx, func(tx *gorm.DB) error {
		for _, b := range brokers {
			if err := tx.Exec(kickUpsert, deviceID, b, reason, now, now, now, now).Error; err != nil {
				return classify(err, "session kick")
			}
		}
		return nil
	})
}

// ClaimKicks leases up to limit due kicks (pending or failed, next attempt
// reached, no live lease) for the named brokers until now+lease, counting
// the attempt. Each row is taken with a conditional UPDATE, so of several
// replicas polling one database only one gets a given row; a worker that
// dies mid-delivery leaves a lease that expires, and the row is taken again.
func (s *Store) ClaimKicks(ctx context.Context, brokers []string, now time.Time, lease time.Duration, limit int) ([]SessionKick, error) {
	if len(brokers) == 0 {
		return nil, nil
	}
	if limit <= 0 {
		limit = 100
	}
	t, until := ms(now), ms(now.Add(lease))
	due := []string{string(KickPending), string(KickFailed)}
	// A cheap read first: an idle poll (the common case) takes no write lock.
	var n int64
	if err := s.db.WithContext(ctx).Model(&kickRow{}).
		Where("status IN ? AND next_attempt_at <= ? AND lease_until <= ? AND broker IN ?", due, t, t, brokers).
		Limit(1).Count(&n).Error; err != nil {
		return nil, classify(err, "session kicks")
	}
	if n == 0 {
		return nil, nil
	}
	var out []SessionKick
	err := s.write(ctx, func(tx *gorm.DB) error {
		out = out[:0]
		var rows []kickRow
		if err := tx.Where("status IN ? AND next_attempt_at <= ? AND lease_until <= ? AND broker IN ?", due, t, t, brokers).
			Order("next_attempt_at, device_id, broker").Limit(limit).Find(&rows).Error; err != nil {
			return classify(err, "session kicks")
		}
		for _, r := range rows {
			res := tx.Model(&kickRow{}).
				Where("device_id = ? AND broker = ? AND generation = ? AND status IN ? AND lease_until <= ?", r.DeviceID, r.Broker, r.Generation, due, t).
				Updates(map[string]any{"lease_until": until, "attempts": gorm.Expr("attempts + 1"), "updated_at": t})
			if res.Error != nil {
				return classify(res.Error, "session kick")
			}
			if res.RowsAffected == 1 {
				r.Attempts++
				r.LeaseUntil, r.UpdatedAt = until, t
				out = append(out, r.domain())
			}
		}
		return nil
	})
	return out, err
}

// FinishKick records a successful delivery of generation gen. It reports
// false when a newer request replaced it meanwhile (that one stays due).
func (s *Store) FinishKick(ctx context.Context, deviceID, broker string, gen int64, at time.Time) (bool, error) {
	t := ms(at)
	var ok bool
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&kickRow{}).Where("device_id = ? AND broker = ? AND generation = ?", deviceID, broker, gen).
			Updates(map[string]any{"status": string(KickDone), "last_error": "", "lease_until": 0, "done_at": t, "updated_at": t})
		ok = res.RowsAffected == 1
		return classify(res.Error, "session kick")
	})
	return ok, err
}

// RetryKick records a failed delivery of generation gen: the kick is due
// again at next, with status pending, or failed once the caller has given up
// fast retries. It reports false when a newer request replaced it meanwhile.
func (s *Store) RetryKick(ctx context.Context, deviceID, broker string, gen int64, lastErr string, next time.Time, failed bool, at time.Time) (bool, error) {
	status := KickPending
	if failed {
		status = KickFailed
	}
	if len(lastErr) > 1000 {
		lastErr = lastErr[:1000]
	}
	t := ms(at)
	var ok bool
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&kickRow{}).Where("device_id = ? AND broker = ? AND generation = ?", deviceID, broker, gen).
			Updates(map[string]any{"status": string(status), "last_error": lastErr, "lease_until": 0,
				"next_attempt_at": ms(next), "updated_at": t})
		ok = res.RowsAffected == 1
		return classify(res.Error, "session kick")
	})
	return ok, err
}

// CancelKicks cancels deviceID's kicks that are not delivered yet (pending
// or failed) and bumps their generation, so a delivery in flight records no
// outcome and the row is never claimed again. It returns how many it
// cancelled.
func (s *Store) CancelKicks(ctx context.Context, deviceID string, at time.Time) (int64, error) {
	t := ms(at)
	var n int64
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&kickRow{}).Where("device_id = ? AND status IN ?", deviceID, []string{string(KickPending), string(KickFailed)}).
			Updates(map[string]any{"status": string(KickCancelled), "generation": gorm.Expr("generation + 1"),
				"lease_until": 0, "updated_at": t})
		n = res.RowsAffected
		return classify(res.Error, "session kicks")
	})
	return n, err
}

// DeviceKicks returns the kicks of one device, one per broker, by broker name.
func (s *Store) DeviceKicks(ctx context.Context, deviceID string) ([]SessionKick, error) {
	var rows []kickRow
	if err := s.db.WithContext(ctx).Where("device_id = ?", deviceID).Order("broker").Find(&rows).Error; err != nil {
		return nil, classify(err, "session kicks")
	}
	return kickDomains(rows), nil
}

// ListKicks returns kicks, most recently changed first.
func (s *Store) ListKicks(ctx context.Context, f KickFilter) ([]SessionKick, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, fault.New(fault.InvalidArgument, "session kick status %q is not pending, done, failed or cancelled", f.Status)
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q := s.db.WithContext(ctx).Order("updated_at DESC, device_id, broker").Limit(f.Limit)
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	var rows []kickRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, classify(err, "session kicks")
	}
	return kickDomains(rows), nil
}

func kickDomains(rows []kickRow) []SessionKick {
	out := make([]SessionKick, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out
}

// CountKicks counts kicks by status in one GROUP BY, which the
// session_kicks_due index (status first) answers without reading a row.
// Statuses without kicks are absent.
func (s *Store) CountKicks(ctx context.Context) (map[KickStatus]int64, error) {
	var rows []struct {
		Status string
		N      int64
	}
	if err := s.db.WithContext(ctx).Model(&kickRow{}).Select("status, COUNT(*) AS n").Group("status").
		Scan(&rows).Error; err != nil {
		return nil, classify(err, "session kicks")
	}
	out := make(map[KickStatus]int64, len(rows))
	for _, r := range rows {
		out[KickStatus(r.Status)] = r.N
	}
	return out, nil
}
