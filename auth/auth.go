package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/store"
)

// LoginThrottled is the code of a login refused because of too many recent
// failures; the error wraps a *ThrottledError saying how long to wait.
const LoginThrottled fault.Code = "login_throttled"

// ThrottledError carries the wait before the next login attempt.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string { return "retry after " + e.RetryAfter.String() }

// Users stores user accounts.
type Users interface {
	CreateAdminUser(ctx context.Context, u store.AdminUser, audit *store.AuditEvent) (store.AdminUser, error)
	GetAdminUser(ctx context.Context, username string) (store.AdminUser, error)
	ListAdminUsers(ctx context.Context) ([]store.AdminUser, error)
	UpdateAdminUser(ctx context.Context, username string, upd store.AdminUserUpdate, audit *store.AuditEvent) (store.AdminUser, error)
	DeleteAdminUser(ctx context.Context, username string, audit *store.AuditEvent) error
	CountActiveAdmins(ctx context.Context) (int, error)
}

// Sessions stores signed-in sessions.
type Sessions interface {
	CreateAdminSession(ctx context.Context, s store.AdminSession, audit *store.AuditEvent) (store.AdminSession, error)
	GetAdminSession(ctx context.Context, id string) (store.AdminSession, store.AdminUser, error)
	TouchAdminSession(ctx context.Context, id string, at time.Time) error
	DeleteAdminSession(ctx context.Context, id string, audit *store.AuditEvent) error
	DeleteStaleAdminSessions(ctx context.Context, now, idleBefore time.Time) (int64, error)
}

// Config wires the service. Users and Sessions are required.
type Config struct {
	Users    Users
	Sessions Sessions
	// Params for new password hashes; default DefaultParams.
	Params Params
	// AbsoluteTTL ends a session this long after login whatever happens
	// (default 12h); IdleTTL ends it after this long without a request
	// (default 1h).
	AbsoluteTTL time.Duration
	IdleTTL     time.Duration
	// FreeFailures failed logins per username and per client address are
	// allowed within FailureWindow before each further attempt waits
	// BaseDelay, doubling up to MaxDelay. Defaults 5, 15m, 1s, 1m.
	FreeFailures  int
	FailureWindow time.Duration
	BaseDelay     time.Duration
	MaxDelay      time.Duration
	// MaxConcurrentHashes caps simultaneous argon2id computations, each of
	// which takes Params.Memory: a burst of logins queues instead of
	// exhausting memory. Default 2.
	MaxConcurrentHashes int
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Params == (Params{}) {
		c.Params = DefaultParams
	}
	if c.AbsoluteTTL == 0 {
		c.AbsoluteTTL = 12 * time.Hour
	}
	if c.IdleTTL == 0 {
		c.IdleTTL = time.Hour
	}
	if c.FreeFailures == 0 {
		c.FreeFailures = 5
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = 15 * time.Minute
	}
	if c.BaseDelay == 0 {
		c.BaseDelay = time.Second
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = time.Minute
	}
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = 2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Service manages users and their sessions. It is safe for concurrent use.
type Service struct {
	cfg Config
	// throttle counts failures per username; ipThrottle per client
	// address, with four times the free budget, since many honest users
	// may share one address (a proxy, an office NAT).
	throttle   *throttle
	ipThrottle *throttle
	hashSem    chan struct{}
	// dummyHash is verified when the username is unknown, so that a miss
	// costs what a wrong password costs.
	dummyHash string
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Users == nil || cfg.Sessions == nil {
		return nil, errors.New("auth: Users and Sessions are required")
	}
	cfg.setDefaults()
	if _, err := ParsePHC(fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		cfg.Params.Memory, cfg.Params.Time, cfg.Params.Threads)); err != nil || cfg.Params.SaltLen < minSaltLen ||
		cfg.Params.SaltLen > maxSaltLen || cfg.Params.KeyLen < minKeyLen || cfg.Params.KeyLen > maxKeyLen {
		return nil, fault.New(fault.InvalidArgument, "auth: password hash parameters out of range")
	}
	dummy, err := HashPassword(GeneratePassword(), cfg.Params)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, dummyHash: dummy, hashSem: make(chan struct{}, cfg.MaxConcurrentHashes),
		throttle:   newThrottle(cfg.FreeFailures, cfg.BaseDelay, cfg.MaxDelay, cfg.FailureWindow),
		ipThrottle: newThrottle(4*cfg.FreeFailures, cfg.BaseDelay, cfg.MaxDelay, cfg.FailureWindow)}, nil
}

// User is an account as shown to callers: everything but the hash.
type User struct {
	ID          string
	Username    string
	Role        Role
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DisabledAt  *time.Time
	LastLoginAt *time.Time
}

func userOf(u store.AdminUser) User {
	return User{ID: u.ID, Username: u.Username, Role: Role(u.Role), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		DisabledAt: u.DisabledAt, LastLoginAt: u.LastLoginAt}
}

// Actor names the user in audit events.
func (u User) Actor() string { return "user:" + u.Username }

// Session is a signed-in user. Secret is set only by Login: it goes into
// the cookie once and is never stored or logged.
type Session struct {
	ID        string // SHA-256 of the secret, hex
	Secret    string
	User      User
	CSRFToken string
	// ExpiresAt is when the session ends if unused: the earlier of the idle
	// and the absolute deadline.
	ExpiresAt time.Time
}

// Credentials is one login attempt.
type Credentials struct {
	Username  string
	Password  string
	ClientIP  string
	UserAgent string
}

var errBadLogin = fault.New(fault.Unauthenticated, "wrong username or password")

// Login checks credentials and opens a session. An unknown user, a wrong
// password and a disabled user all fail alike, in about the same time.
func (s *Service) Login(ctx context.Context, cr Credentials) (Session, error) {
	now := s.cfg.Now()
	username := strings.ToLower(strings.TrimSpace(cr.Username))
	type keyed struct {
		t   *throttle
		key string
	}
	var keys []keyed
	if cr.ClientIP != "" {
		keys = append(keys, keyed{s.ipThrottle, cr.ClientIP})
	}
	keys = append(keys, keyed{s.throttle, username})
	// Each attempt counts as a failure from the start (begin) and is
	// cleared on success, so parallel guesses cannot all slip past the
	// check while the first ones are still hashing. The address goes first:
	// an attempt refused for its username still counts against its address.
	for _, k := range keys {
		if wait := k.t.begin(k.key, now); wait > 0 {
			secs := int(wait.Round(time.Second) / time.Second)
			return Session{}, fault.Wrap(&ThrottledError{RetryAfter: wait}, LoginThrottled,
				"too many failed logins; try again in %d seconds", max(secs, 1))
		}
	}
	hash, known := s.dummyHash, false
	u, err := s.cfg.Users.GetAdminUser(ctx, username)
	switch {
	case err == nil:
		hash, known = u.PasswordHash, true
	case !fault.Is(err, fault.NotFound):
		return Session{}, err
	}
	ok, err := s.verify(ctx, cr.Password, hash)
	if err != nil && known && !fault.Is(err, fault.InvalidArgument) {
		return Session{}, err
	}
	if !known || !ok || err != nil || u.Disabled() || len(cr.Password) > maxPasswordBytes {
		if known && err != nil {
			s.cfg.Log.Error("stored password hash is unreadable", "user", username, "err", err)
		}
		return Session{}, errBadLogin
	}
	// The username's slate is wiped: its owner just proved the password.
	// The address only gets this attempt back. Wiping it too would let
	// anyone holding one account reset the address budget by signing in
	// between guesses at other accounts.
	for _, k := range keys {
		if k.t == s.throttle {
			k.t.succeed(k.key)
		} else {
			k.t.refund(k.key)
		}
	}
	if needsRehash(u.PasswordHash, s.cfg.Params) {
		// Upgrade old parameters while the password is at hand; the password
		// is the same, so the user's sessions stay. Failure only postpones
		// the upgrade.
		if h, err := s.hash(ctx, cr.Password); err == nil {
			if _, err := s.cfg.Users.UpdateAdminUser(ctx, u.Username, store.AdminUserUpdate{PasswordHash: &h}, nil); err != nil {
				s.cfg.Log.Warn("password rehash failed", "user", u.Username, "err", err)
			}
		}
	}
	if _, err := s.cfg.Sessions.DeleteStaleAdminSessions(ctx, now, now.Add(-s.cfg.IdleTTL)); err != nil {
		s.cfg.Log.Warn("pruning stale sessions failed", "err", err)
	}
	cookie := secret.New("")
	sess, err := s.cfg.Sessions.CreateAdminSession(ctx, store.AdminSession{ID: sessionID(cookie), UserID: u.ID,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.AbsoluteTTL), LastSeenAt: now, UserAgent: cr.UserAgent},
		audit.Event(userOf(u).Actor(), "session.login", "admin_user", u.Username, "ip="+cr.ClientIP))
	if err != nil {
		return Session{}, err
	}
	u.LastLoginAt = &now
	return Session{ID: sess.ID, Secret: cookie, User: userOf(u), CSRFToken: csrfToken(cookie),
		ExpiresAt: s.deadline(sess.ExpiresAt, now)}, nil
}

// touchEvery bounds how often a session's last-seen time is written: idle
// expiry is accurate to this much, and a busy UI does not write per request.
const touchEvery = time.Minute

// Authenticate returns the live session for a cookie secret. An unknown,
// expired or signed-out session, or one whose user is disabled, is
// fault.Unauthenticated.
func (s *Service) Authenticate(ctx context.Context, cookie string) (Session, error) {
	gone := fault.New(fault.Unauthenticated, "session expired or signed out; sign in again")
	if !secret.WellFormed(cookie, "") {
		return Session{}, gone
	}
	id := sessionID(cookie)
	sess, u, err := s.cfg.Sessions.GetAdminSession(ctx, id)
	if fault.Is(err, fault.NotFound) {
		return Session{}, gone
	}
	if err != nil {
		return Session{}, err
	}
	now := s.cfg.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) >= s.cfg.IdleTTL || u.Disabled() {
		if err := s.cfg.Sessions.DeleteAdminSession(ctx, id, nil); err != nil {
			s.cfg.Log.Warn("deleting an expired session failed", "err", err)
		}
		return Session{}, gone
	}
	lastSeen := sess.LastSeenAt
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		if err := s.cfg.Sessions.TouchAdminSession(ctx, id, now); err != nil {
			return Session{}, err
		}
		lastSeen = now
	}
	return Session{ID: id, User: userOf(u), CSRFToken: csrfToken(cookie),
		ExpiresAt: s.deadline(sess.ExpiresAt, lastSeen)}, nil
}

func (s *Service) deadline(absolute, lastSeen time.Time) time.Time {
	idle := lastSeen.Add(s.cfg.IdleTTL)
	if idle.Before(absolute) {
		return idle.UTC()
	}
	return absolute.UTC()
}

// CheckCSRF reports whether token is the session's CSRF token.
func CheckCSRF(sess Session, token string) bool {
	return token != "" && sess.CSRFToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRFToken)) == 1
}

// Logout ends the session.
func (s *Service) Logout(ctx context.Context, sess Session) error {
	return s.cfg.Sessions.DeleteAdminSession(ctx, sess.ID,
		audit.Event(sess.User.Actor(), "session.logout", "admin_user", sess.User.Username, ""))
}

// ChangeOwnPassword sets a new password after checking the current one;
// the user's other sessions end, this one stays.
func (s *Service) ChangeOwnPassword(ctx context.Context, sess Session, current, next string) error {
	now := s.cfg.Now()
	key := sess.User.Username
	if wait := s.throttle.begin(key, now); wait > 0 {
		return fault.Wrap(&ThrottledError{RetryAfter: wait}, LoginThrottled, "too many failed attempts; try again later")
	}
	u, err := s.cfg.Users.GetAdminUser(ctx, sess.User.Username)
	if err != nil {
		return err
	}
	ok, err := s.verify(ctx, current, u.PasswordHash)
	if err != nil || !ok {
		return fault.New(fault.PermissionDenied, "the current password is wrong")
	}
	s.throttle.succeed(key)
	if err := checkPassword(next); err != nil {
		return err
	}
	h, err := s.hash(ctx, next)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Users.UpdateAdminUser(ctx, u.Username, store.AdminUserUpdate{PasswordHash: &h,
		EndSessions: true, KeepSession: sess.ID},
		audit.Event(sess.User.Actor(), "admin_user.password_change", "admin_user", u.Username, "own password")); err != nil {
		return err
	}
	return nil
}

// CreateUser adds a user.
func (s *Service) CreateUser(ctx context.Context, actor, username, password string, role Role) (User, error) {
	if err := checkUsername(username); err != nil {
		return User{}, err
	}
	if !role.Valid() {
		return User{}, errBadRole
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	u, err := s.cfg.Users.CreateAdminUser(ctx, store.AdminUser{Username: username, PasswordHash: h, Role: string(role)},
		audit.Event(actor, "admin_user.create", "admin_user", username, "role="+string(role)))
	if err != nil {
		return User{}, err
	}
	return userOf(u), nil
}

// UserUpdate changes the set fields of a user.
type UserUpdate struct {
	Role     *Role
	Password *string
	Disabled *bool
}

// UpdateUser changes a user's role, password or disabled state. A new
// password or disabling ends the user's sessions. The last enabled admin
// can be neither demoted nor disabled.
func (s *Service) UpdateUser(ctx context.Context, actor, username string, upd UserUpdate) (User, error) {
	if upd.Role == nil && upd.Password == nil && upd.Disabled == nil {
		return User{}, fault.New(fault.InvalidArgument, "nothing to change: give role, password or disabled")
	}
	if upd.Role != nil && !upd.Role.Valid() {
		return User{}, errBadRole
	}
	cur, err := s.cfg.Users.GetAdminUser(ctx, username)
	if err != nil {
		return User{}, err
	}
	losesAdmin := (upd.Role != nil && *upd.Role != RoleAdmin) || (upd.Disabled != nil && *upd.Disabled)
	if losesAdmin {
		if err := s.keepAnAdmin(ctx, cur); err != nil {
			return User{}, err
		}
	}
	st := store.AdminUserUpdate{Role: (*string)(upd.Role), Disabled: upd.Disabled,
		EndSessions: upd.Password != nil || (upd.Disabled != nil && *upd.Disabled)}
	var details []string
	if upd.Role != nil {
		details = append(details, "role="+string(*upd.Role))
	}
	if upd.Disabled != nil {
		details = append(details, fmt.Sprintf("disabled=%t", *upd.Disabled))
	}
	if upd.Password != nil {
		if err := checkPassword(*upd.Password); err != nil {
			return User{}, err
		}
		h, err := s.hash(ctx, *upd.Password)
		if err != nil {
			return User{}, err
		}
		st.PasswordHash = &h
		details = append(details, "password=reset")
	}
	u, err := s.cfg.Users.UpdateAdminUser(ctx, username, st,
		audit.Event(actor, "admin_user.update", "admin_user", username, strings.Join(details, " ")))
	if err != nil {
		return User{}, err
	}
	return userOf(u), nil
}

// DeleteUser removes a user and its sessions; not the last enabled admin.
func (s *Service) DeleteUser(ctx context.Context, actor, username string) error {
	cur, err := s.cfg.Users.GetAdminUser(ctx, username)
	if err != nil {
		return err
	}
	if err := s.keepAnAdmin(ctx, cur); err != nil {
		return err
	}
	return s.cfg.Users.DeleteAdminUser(ctx, username, audit.Event(actor, "admin_user.delete", "admin_user", username, ""))
}

// keepAnAdmin refuses to take away the last enabled admin account, which
// would leave the UI without anyone who can manage users. (Bearer tokens and
// the local CLI still could; this guards against an accident, not a race.)
func (s *Service) keepAnAdmin(ctx context.Context, u store.AdminUser) error {
	if Role(u.Role) != RoleAdmin || u.Disabled() {
		return nil
	}
	n, err := s.cfg.Users.CountActiveAdmins(ctx)
	if err != nil {
		return err
	}
	if n <= 1 {
		return fault.New(fault.Conflict, "%s is the last enabled admin user", u.Username)
	}
	return nil
}

// ListUsers returns every user.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) {
	us, err := s.cfg.Users.ListAdminUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, len(us))
	for i, u := range us {
		out[i] = userOf(u)
	}
	return out, nil
}

// GetUser returns one user.
func (s *Service) GetUser(ctx context.Context, username string) (User, error) {
	u, err := s.cfg.Users.GetAdminUser(ctx, username)
	if err != nil {
		return User{}, err
	}
	return userOf(u), nil
}

// hash and verify run argon2id under the concurrency cap.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashSem }()
	return HashPassword(password, s.cfg.Params)
}

func (s *Service) verify(ctx context.Context, password, hash string) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashSem }()
	if len(password) > maxPasswordBytes {
		// Still spend the time, on a bounded input.
		password = password[:maxPasswordBytes]
	}
	return VerifyPassword(password, hash)
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fault.Wrap(ctx.Err(), fault.Unavailable, "request cancelled")
	}
}

// Password rules: long enough to resist guessing, short enough that hashing
// cost stays fixed.
const (
	MinPasswordLen   = 12
	maxPasswordBytes = 1024
	maxUsernameLen   = 64
)

func checkPassword(p string) error {
	if utf8.RuneCountInString(p) < MinPasswordLen {
		return fault.New(fault.InvalidArgument, "password must be at least %d characters", MinPasswordLen)
	}
	if len(p) > maxPasswordBytes {
		return fault.New(fault.InvalidArgument, "password must be at most %d bytes", maxPasswordBytes)
	}
	if !utf8.ValidString(p) {
		return fault.New(fault.InvalidArgument, "password must be valid UTF-8")
	}
	return nil
}

// checkUsername allows lowercase letters, digits and . _ - @, starting with
// a letter or digit: names that are safe in URLs, logs and audit actors.
func checkUsername(u string) error {
	if u == "" || len(u) > maxUsernameLen {
		return fault.New(fault.InvalidArgument, "username must be 1 to %d characters", maxUsernameLen)
	}
	for i, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-' || r == '@'):
		default:
			return fault.New(fault.InvalidArgument, "username may hold only lowercase letters, digits and . _ - @ (starting with a letter or digit)")
		}
	}
	return nil
}

// GeneratePassword returns a random 24-character password (144 bits).
func GeneratePassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionID is the stored key of a session: the hash of its cookie secret,
// stored like every other bearer secret (internal/secret).
func sessionID(cookie string) string { return secret.Hash(cookie) }

// csrfToken derives the session's CSRF token from its secret, so it needs no
// storage, survives on every replica, and cannot be computed from the
// database (which holds only the secret's hash).
func csrfToken(cookie string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte("gatehouse csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
