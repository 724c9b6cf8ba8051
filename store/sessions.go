package store

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
)

// AdminSession is a signed-in web UI session. ID is the SHA-256 of the
// session secret held by the browser; the secret itself is never stored.
// The times are set by the caller (package auth owns the expiry rules).
type AdminSession struct {
	ID         string
	UserID     string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastSeenAt time.Time
	UserAgent  string
}

type adminSessionRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	UserID     string `gorm:"column:user_id"`
	CreatedAt  int64  `gorm:"column:created_at;autoCreateTime:false"`
	ExpiresAt  int64  `gorm:"column:expires_at"`
	LastSeenAt int64  `gorm:"column:last_seen_at"`
	UserAgent  string `gorm:"column:user_agent"`
}

func (adminSessionRow) TableName() string { return "admin_sessions" }

func (r adminSessionRow) domain() AdminSession {
	return AdminSession{ID: r.ID, UserID: r.UserID, CreatedAt: fromMS(r.CreatedAt), ExpiresAt: fromMS(r.ExpiresAt),
		LastSeenAt: fromMS(r.LastSeenAt), UserAgent: r.UserAgent}
}

// maxUserAgent bounds the stored User-Agent; it is informational only.
const maxUserAgent = 256

// CreateAdminSession stores a session and records the user's login time,
// with audit (when not nil) in the same transaction.
func (s *Store) CreateAdminSession(ctx context.Context, sess AdminSession, audit *AuditEvent) (AdminSession, error) {
	ua := sess.UserAgent
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	r := adminSessionRow{ID: sess.ID, UserID: sess.UserID, CreatedAt: ms(sess.CreatedAt), ExpiresAt: ms(sess.ExpiresAt),
		LastSeenAt: ms(sess.LastSeenAt), UserAgent: ua}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "session")
		}
		if err := tx.Model(&adminUserRow{}).Where("id = ?", sess.UserID).
			Update("last_login_at", ms(sess.CreatedAt)).Error; err != nil {
			return classify(err, "user")
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return AdminSession{}, err
	}
	return r.domain(), nil
}

// sessionUserRow is one session joined with its user.
type sessionUserRow struct {
	ID            string `gorm:"column:id"`
	UserID        string `gorm:"column:user_id"`
	CreatedAt     int64  `gorm:"column:created_at"`
	ExpiresAt     int64  `gorm:"column:expires_at"`
	LastSeenAt    int64  `gorm:"column:last_seen_at"`
	UserAgent     string `gorm:"column:user_agent"`
	UUsername     string `gorm:"column:u_username"`
	UPasswordHash string `gorm:"column:u_password_hash"`
	URole         string `gorm:"column:u_role"`
	UCreatedAt    int64  `gorm:"column:u_created_at"`
	UUpdatedAt    int64  `gorm:"column:u_updated_at"`
	UDisabledAt   *int64 `gorm:"column:u_disabled_at"`
	ULastLoginAt  *int64 `gorm:"column:u_last_login_at"`
}

const sqlSessionUser = `SELECT s.id, s.user_id, s.created_at, s.expires_at, s.last_seen_at, s.user_agent,
	u.username AS u_username, u.password_hash AS u_password_hash, u.role AS u_role, u.created_at AS u_created_at,
	u.updated_at AS u_updated_at, u.disabled_at AS u_disabled_at, u.last_login_at AS u_last_login_at
	FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id WHERE s.id = ?`

// GetAdminSession returns a session and its user in one query, so every
// request sees the user's current role and disabled state.
func (s *Store) GetAdminSession(ctx context.Context, id string) (AdminSession, AdminUser, error) {
	var r sessionUserRow
	res := s.db.WithContext(ctx).Raw(sqlSessionUser, id).Scan(&r)
	if res.Error != nil {
		return AdminSession{}, AdminUser{}, classify(res.Error, "session")
	}
	if res.RowsAffected == 0 {
		return AdminSession{}, AdminUser{}, classify(gorm.ErrRecordNotFound, "session")
	}
	u := adminUserRow{ID: r.UserID, Username: r.UUsername, PasswordHash: r.UPasswordHash, Role: r.URole,
		CreatedAt: r.UCreatedAt, UpdatedAt: r.UUpdatedAt, DisabledAt: r.UDisabledAt, LastLoginAt: r.ULastLoginAt}
	sr := adminSessionRow{ID: r.ID, UserID: r.UserID, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		LastSeenAt: r.LastSeenAt, UserAgent: r.UserAgent}
	return sr.domain(), u.domain(), nil
}

// TouchAdminSession moves a session's last-seen time forward (never back).
func (s *Store) TouchAdminSession(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		return classify(tx.Model(&adminSessionRow{}).Where("id = ? AND last_seen_at < ?", id, ms(at)).
			Update("last_seen_at", ms(at)).Error, "session")
	})
}

// DeleteAdminSession ends one session, with audit (when not nil) in the
// same transaction; ending a missing one is not an error.
func (s *Store) DeleteAdminSession(ctx context.Context, id string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("id = ?", id).Delete(&adminSessionRow{}).Error; err != nil {
			return classify(err, "session")
		}
		return s.appendAuditTx(tx, audit)
	})
}

// DeleteStaleAdminSessions removes sessions past their absolute expiry or
// last seen before idleBefore, and returns how many went.
func (s *Store) DeleteStaleAdminSessions(ctx context.Context, now, idleBefore time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("expires_at <= ? OR last_seen_at < ?", ms(now), ms(idleBefore)).Delete(&adminSessionRow{})
		n = res.RowsAffected
		return classify(res.Error, "sessions")
	})
	return n, err
}

// ListAdminSessions returns a user's sessions, newest first.
func (s *Store) ListAdminSessions(ctx context.Context, userID string) ([]AdminSession, error) {
	var rows []adminSessionRow
	err := s.db.WithContext(ctx).Where("user_id = ?", userID).Order("created_at DESC").Find(&rows).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, classify(err, "sessions")
	}
	out := make([]AdminSession, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}
