package api

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Browser sessions for the web UI. The cookie holds a random secret (the
// database keeps only its hash); every unsafe request made with the cookie
// must also carry the session's CSRF token in X-CSRF-Token, which a page on
// another site cannot read. Bearer tokens need no CSRF token: browsers never
// attach them by themselves.

const (
	// SessionCookie is the name of the session cookie.
	SessionCookie = "gatehouse_session"
	// CSRFHeader carries the session's CSRF token on unsafe requests.
	CSRFHeader = "X-CSRF-Token"
	ctxSession = "gatehouse.session"
	// loginBodyBytes caps login and password bodies: they hold two strings.
	loginBodyBytes = 16 << 10
)

// sessionRoutes registers the session and user-admin routes.
func (s *Server) sessionRoutes(v1 *echo.Group) {
	small := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(loginBodyBytes)}
	signedIn := append(small[:len(small):len(small)], s.requireSession)
	admin := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(loginBodyBytes), s.requireRole(auth.RoleAdmin)}

	v1.POST("/session", s.login, small...)
	v1.GET("/session", s.getSession, signedIn...)
	v1.DELETE("/session", s.logout, signedIn...)
	v1.POST("/session/password", s.changeOwnPassword, signedIn...)

	v1.GET("/users", s.listUsers, admin...)
	v1.POST("/users", s.createUser, admin...)
	v1.GET("/users/:username", s.getUser, admin...)
	v1.PATCH("/users/:username", s.updateUser, admin...)
	v1.DELETE("/users/:username", s.deleteUser, admin...)
}

func hasSessionCookie(c echo.Context) bool {
	ck, err := c.Cookie(SessionCookie)
	return err == nil && ck.Value != ""
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sessionAuth authenticates by cookie, checks CSRF on unsafe methods, then
// the role. The role is read from the user row on every request, so a
// demotion or a disable takes effect at once.
func (s *Server) sessionAuth(c echo.Context, min auth.Role, next echo.HandlerFunc) error {
	ck, _ := c.Cookie(SessionCookie)
	sess, err := s.cfg.Auth.Authenticate(c.Request().Context(), ck.Value)
	if err != nil {
		if fault.Is(err, fault.Unauthenticated) {
			s.clearCookie(c)
		}
		return err
	}
	if !isSafeMethod(c.Request().Method) {
		if s.crossSite(c.Request()) {
			return fault.New(fault.CSRFFailed, "cross-site request refused")
		}
		if !auth.CheckCSRF(sess, c.Request().Header.Get(CSRFHeader)) {
			return fault.New(fault.CSRFFailed, "missing or wrong %s header", CSRFHeader)
		}
	}
	if err := sess.User.Role.Require(min); err != nil {
		return err
	}
	c.Set(ctxSession, sess)
	return next(c)
}

// requireSession admits only a signed-in browser session (any role).
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !hasSessionCookie(c) {
			return fault.New(fault.Unauthenticated, "not signed in")
		}
		return s.sessionAuth(c, auth.RoleViewer, next)
	}
}

// crossSite reports whether the browser says the request comes from another
// site. Fetch metadata is authoritative when present; Origin is the
// fallback for older browsers (same host as the request, or as the public
// URL). Non-browser clients send neither.
func (s *Server) crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default: // same-site, cross-site, or anything unknown
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return true // includes "null"
	}
	if u.Host == r.Host {
		return false
	}
	pub, err := url.Parse(s.cfg.PublicURL)
	return err != nil || pub.Host == "" || !strings.EqualFold(u.Scheme+"://"+u.Host, pub.Scheme+"://"+pub.Host)
}

func (s *Server) setCookie(c echo.Context, secret string) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.Request().TLS != nil || s.cfg.SecureCookies})
}

func (s *Server) clearCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.Request().TLS != nil || s.cfg.SecureCookies})
}

func viewSession(sess auth.Session) apitypes.Session {
	return apitypes.Session{User: apitypes.SessionUser{Username: sess.User.Username, Role: string(sess.User.Role)},
		CSRFToken: sess.CSRFToken, ExpiresAt: sess.ExpiresAt}
}

func (s *Server) login(c echo.Context) error {
	if s.crossSite(c.Request()) {
		return fault.New(fault.CSRFFailed, "cross-site login refused")
	}
	var b apitypes.LoginRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Username == "" || b.Password == "" {
		return fault.New(fault.InvalidArgument, "username and password are required")
	}
	sess, err := s.cfg.Auth.Login(c.Request().Context(), auth.Credentials{Username: b.Username, Password: b.Password,
		ClientIP: remoteIP(c.Request()), UserAgent: userAgent(c.Request())})
	if err != nil {
		var te *auth.ThrottledError
		if errors.As(err, &te) {
			c.Response().Header().Set("Retry-After", strconv.Itoa(max(int(te.RetryAfter.Round(time.Second)/time.Second), 1)))
		}
		return err
	}
	// Signing in over a live session ends it: the browser drops its cookie
	// for the new one, and a session nobody holds should not stay usable
	// until it idles out (a shared machine, a user switch).
	if ck, err := c.Cookie(SessionCookie); err == nil && ck.Value != "" {
		if old, err := s.cfg.Auth.Authenticate(c.Request().Context(), ck.Value); err == nil {
			if err := s.cfg.Auth.Logout(c.Request().Context(), old); err != nil {
				s.cfg.Logger.Warn("ending the replaced session failed", "err", err)
			}
		}
	}
	s.setCookie(c, sess.Secret)
	return c.JSON(http.StatusOK, viewSession(sess))
}

// remoteIP is the peer address. X-Forwarded-For is not trusted: anyone
// could rotate it to dodge the per-address login throttle.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func currentSession(c echo.Context) (auth.Session, bool) {
	sess, ok := c.Get(ctxSession).(auth.Session)
	return sess, ok
}

func (s *Server) getSession(c echo.Context) error {
	sess, _ := currentSession(c)
	return c.JSON(http.StatusOK, viewSession(sess))
}

func (s *Server) logout(c echo.Context) error {
	sess, _ := currentSession(c)
	if err := s.cfg.Auth.Logout(c.Request().Context(), sess); err != nil {
		return err
	}
	s.clearCookie(c)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) changeOwnPassword(c echo.Context) error {
	var b apitypes.PasswordChange
	if err := decode(c, &b); err != nil {
		return err
	}
	sess, _ := currentSession(c)
	if err := s.cfg.Auth.ChangeOwnPassword(c.Request().Context(), sess, b.Current, b.New); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func viewUser(u auth.User) apitypes.User {
	return apitypes.User{Username: u.Username, Role: string(u.Role), Disabled: u.DisabledAt != nil, CreatedAt: u.CreatedAt,
		UpdatedAt: u.UpdatedAt, DisabledAt: u.DisabledAt, LastLoginAt: u.LastLoginAt}
}

func (s *Server) listUsers(c echo.Context) error {
	us, err := s.cfg.Auth.ListUsers(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.UserList{Users: mapSlice(us, viewUser)})
}

func (s *Server) getUser(c echo.Context) error {
	u, err := s.cfg.Auth.GetUser(c.Request().Context(), c.Param("username"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewUser(u))
}

func (s *Server) createUser(c echo.Context) error {
	var b apitypes.UserRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	u, err := s.cfg.Auth.CreateUser(c.Request().Context(), actor(c), b.Username, b.Password, auth.Role(b.Role))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewUser(u))
}

func (s *Server) updateUser(c echo.Context) error {
	var b apitypes.UserUpdate
	if err := decode(c, &b); err != nil {
		return err
	}
	u, err := s.cfg.Auth.UpdateUser(c.Request().Context(), actor(c), c.Param("username"),
		auth.UserUpdate{Role: (*auth.Role)(b.Role), Password: b.Password, Disabled: b.Disabled})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewUser(u))
}

func (s *Server) deleteUser(c echo.Context) error {
	if err := s.cfg.Auth.DeleteUser(c.Request().Context(), actor(c), c.Param("username")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
