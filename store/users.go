package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// AdminUser is a person who signs in to the web UI. PasswordHash is a
// PHC-format string produced by package auth; the store never sees a
// password.
type AdminUser struct {
	ID           string
	Username     string
	PasswordHash string
	// Role is package auth's role name, stored as is (see AdminToken.Role).
	Role        string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DisabledAt  *time.Time
	LastLoginAt *time.Time
}

// Disabled reports whether the user may no longer sign in.
func (u AdminUser) Disabled() bool { return u.DisabledAt != nil }

// AdminUserUpdate changes the fields that are set; nil leaves a field alone.
type AdminUserUpdate struct {
	Role         *string
	PasswordHash *string
	Disabled     *bool
	// EndSessions deletes the user's sessions in the same transaction,
	// except KeepSession when set (the caller's own).
	EndSessions bool
	KeepSession string
}

type adminUserRow struct {
	ID           string `gorm:"column:id;primaryKey"`
	Username     string `gorm:"column:username"`
	PasswordHash string `gorm:"column:password_hash"`
	Role         string `gorm:"column:role"`
	CreatedAt    int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt    int64  `gorm:"column:updated_at;autoUpdateTime:false"`
	DisabledAt   *int64 `gorm:"column:disabled_at"`
	LastLoginAt  *int64 `gorm:"column:last_login_at"`
}

func (adminUserRow) TableName() string { return "admin_users" }

func (r adminUserRow) domain() AdminUser {
	return AdminUser{ID: r.ID, Username: r.Username, PasswordHash: r.PasswordHash, Role: r.Role,
		CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt),
		DisabledAt: fromOptMS(r.DisabledAt), LastLoginAt: fromOptMS(r.LastLoginAt)}
}

// CreateAdminUser stores a new user; fault.AlreadyExists when the username is taken.
func (s *Store) CreateAdminUser(ctx context.Context, u AdminUser, audit *AuditEvent) (AdminUser, error) {
	if u.ID == "" {
		u.ID = uuid.Must(uuid.NewV7()).String()
	}
	now := ms(s.now())
	r := adminUserRow{ID: u.ID, Username: u.Username, PasswordHash: u.PasswordHash, Role: u.Role,
		CreatedAt: now, UpdatedAt: now, DisabledAt: optMS(u.DisabledAt)}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, "user "+u.Username)
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return AdminUser{}, err
	}
	return r.domain(), nil
}

// GetAdminUser finds a user by username.
func (s *Store) GetAdminUser(ctx context.Context, username string) (AdminUser, error) {
	var r adminUserRow
	if err := s.db.WithContext(ctx).Where("username = ?", username).Take(&r).Error; err != nil {
		return AdminUser{}, classify(err, "user "+username)
	}
	return r.domain(), nil
}

// ListAdminUsers returns every user ordered by username.
func (s *Store) ListAdminUsers(ctx context.Context) ([]AdminUser, error) {
	var rows []adminUserRow
	if err := s.db.WithContext(ctx).Order("username").Find(&rows).Error; err != nil {
		return nil, classify(err, "users")
	}
	out := make([]AdminUser, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// adminRole is how auth.RoleAdmin is stored. CountActiveAdmins needs it in
// its query; the rest of the store treats roles as opaque strings.
const adminRole = "admin"

// CountActiveAdmins counts enabled users with the admin role.
func (s *Store) CountActiveAdmins(ctx context.Context) (int, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&adminUserRow{}).
		Where("role = ? AND disabled_at IS NULL", adminRole).Count(&n).Error
	return int(n), classify(err, "users")
}

// UpdateAdminUser applies upd to the user.
func (s *Store) UpdateAdminUser(ctx context.Context, username string, upd AdminUserUpdate, audit *AuditEvent) (AdminUser, error) {
	var out AdminUser
	err := s.write(ctx, func(tx *gorm.DB) error {
		var r adminUserRow
		if err := tx.Where("username = ?", username).Take(&r).Error; err != nil {
			return classify(err, "user "+username)
		}
		now := ms(s.now())
		set := map[string]any{"updated_at": now}
		if upd.Role != nil {
			set["role"] = *upd.Role
		}
		if upd.PasswordHash != nil {
			set["password_hash"] = *upd.PasswordHash
		}
		if upd.Disabled != nil {
			switch {
			case *upd.Disabled && r.DisabledAt == nil:
				set["disabled_at"] = now
			case !*upd.Disabled:
				set["disabled_at"] = nil
			}
		}
		if err := tx.Model(&adminUserRow{}).Where("id = ?", r.ID).Updates(set).Error; err != nil {
			return classify(err, "user "+username)
		}
		if upd.EndSessions {
			q := tx.Where("user_id = ?", r.ID)
			if upd.KeepSession != "" {
				q = q.Where("id <> ?", upd.KeepSession)
			}
			if err := q.Delete(&adminSessionRow{}).Error; err != nil {
				return classify(err, "sessions")
			}
		}
		if err := tx.Where("id = ?", r.ID).Take(&r).Error; err != nil {
			return classify(err, "user "+username)
		}
		out = r.domain()
		return s.appendAuditTx(tx, audit)
	})
	return out, err
}

// DeleteAdminUser removes a user and all of its sessions.
func (s *Store) DeleteAdminUser(ctx context.Context, username string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		var r adminUserRow
		if err := tx.Where("username = ?", username).Take(&r).Error; err != nil {
			return classify(err, "user "+username)
		}
		if err := tx.Where("user_id = ?", r.ID).Delete(&adminSessionRow{}).Error; err != nil {
			return classify(err, "sessions")
		}
		res := tx.Where("id = ?", r.ID).Delete(&adminUserRow{})
		if res.Error != nil {
			return classify(res.Error, "user "+username)
		}
		if res.RowsAffected == 0 {
			return fault.New(fault.NotFound, "user %s not found", username)
		}
		return s.appendAuditTx(tx, audit)
	})
}
