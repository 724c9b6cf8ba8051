// Package api is Gatehouse's HTTP edge: the admin REST API under /api/v1,
// the device endpoints (enroll, renew), and the web UI mounted at /.
//
// Handlers are thin: decode, validate the shape, call a domain service,
// render. Fault codes become HTTP statuses in one place (errors.go) and
// every route is listed in one file (routes.go).
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// AdminTokens authenticates admin API bearer tokens (auth.Tokens): an
// unknown token is fault.Unauthenticated, a weaker role than min
// fault.PermissionDenied.
type AdminTokens interface {
	Check(ctx context.Context, bearer string, min auth.Role) (auth.Token, error)
}

// Batches reads token batches.
type Batches interface {
	GetTokenBatch(ctx context.Context, id string) (store.TokenBatch, error)
	ListTokenBatches(ctx context.Context, limit int) ([]store.TokenBatch, error)
}

// AuditLog reads audit events and checks their hash chain.
type AuditLog interface {
	ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error)
	VerifyAuditChain(ctx context.Context, since time.Time) (store.AuditVerification, error)
}

// PolicyVersions reads stored policy versions.
type PolicyVersions interface {
	GetPolicyVersion(ctx context.Context, version int64) (store.PolicyVersion, error)
	ListPolicyVersions(ctx context.Context) ([]store.PolicyVersion, error)
}

// CAInfo publishes the CA certificates.
type CAInfo interface {
	ChainPEM() []byte
	RootPEM() []byte
}

// Config wires the API. Every dependency is required (New names the
// missing ones): each route is always registered, so a server that lacked
// one would otherwise fail only when its route is first called.
type Config struct {
	Inventory   *inventory.Service
	Enroll      *enroll.Service
	AdminTokens AdminTokens
	Batches     Batches
	Audit       AuditLog
	CA          CAInfo
	// Policies manages policy versions; Decisions is the live core.
	Policies       *policy.Service
	PolicyVersions PolicyVersions
	Decisions      Decisions
	// Stats answers the dashboard's counts, Traffic its charts.
	Stats   Stats
	Traffic Traffic
	// Revoke takes access away.
	Revoke *revoke.Service
	// SessionKicks shows live-session kick status (kicks.go).
	SessionKicks SessionKicks
	// KickTargets reports the kick targets' state ("targets" in GET
	// /session-kicks). The kick service always exists; with no target
	// configured it reports none.
	KickTargets KickTargets
	// OCSP answers /ocsp (public, no auth).
	OCSP OCSP
	// CRL serves /crl and /crl.pem (public, no auth) and the CRL status.
	CRL CRL
	// Auth signs web UI users in (session and user routes); bearer tokens
	// work alongside.
	Auth *auth.Service
	// SecureCookies marks the session cookie Secure even on plain HTTP
	// (behind a TLS-terminating proxy); over TLS it always is.
	SecureCookies bool
	// PublicURL is where browsers reach the API (api.public_url). Behind
	// a reverse proxy that rewrites Host, a browser's Origin matches this
	// rather than the Host the server sees.
	PublicURL string
	// UI serves everything outside /api (package ui).
	UI http.Handler
	// Logger receives malfunctions; default discards.
	Logger *slog.Logger
	// MaxBodyBytes caps admin request bodies; device bodies are capped at
	// DeviceBodyBytes. Defaults 8 MiB and 64 KiB.
	MaxBodyBytes    int64
	DeviceBodyBytes int64
	// Version is reported by GET /api/v1/version.
	Version string
	// Observer, when set, is told of every request, enrollment and OCSP
	// answer (observe.go).
	Observer Observer
	// EST serves RFC 7030 under /.well-known/est (package est).
	EST EST
	// Vendors manages the IDevID vendor PKIs of fleets.
	Vendors *vendors.Service
}

// EST mounts the EST routes (est.Server) with the API's device middleware.
type EST interface {
	Mount(e *echo.Echo, mw ...echo.MiddlewareFunc)
}

// missing names the required dependencies cfg lacks, in field order.
func (cfg *Config) missing() []string {
	var out []string
	for _, d := range []struct {
		name   string
		absent bool
	}{
		{"Inventory", cfg.Inventory == nil}, {"Enroll", cfg.Enroll == nil}, {"AdminTokens", cfg.AdminTokens == nil},
		{"Batches", cfg.Batches == nil}, {"Audit", cfg.Audit == nil}, {"CA", cfg.CA == nil},
		{"Policies", cfg.Policies == nil}, {"PolicyVersions", cfg.PolicyVersions == nil}, {"Decisions", cfg.Decisions == nil},
		{"Stats", cfg.Stats == nil}, {"Traffic", cfg.Traffic == nil}, {"Revoke", cfg.Revoke == nil}, {"SessionKicks", cfg.SessionKicks == nil},
		{"KickTargets", cfg.KickTargets == nil}, {"OCSP", cfg.OCSP == nil}, {"CRL", cfg.CRL == nil},
		{"Auth", cfg.Auth == nil}, {"UI", cfg.UI == nil}, {"EST", cfg.EST == nil}, {"Vendors", cfg.Vendors == nil},
	} {
		if d.absent {
			out = append(out, d.name)
		}
	}
	return out
}

// Server is the HTTP API.
type Server struct {
	cfg       Config
	echo      *echo.Echo
	apiRoutes []apiRoute
	openapi   []byte // GET /api/v1/openapi.json (openapi.go)
}

// New builds the API handler.
func New(cfg Config) (*Server, error) {
	if m := cfg.missing(); len(m) > 0 {
		return nil, errors.New("api: missing " + strings.Join(m, ", ") + " (required)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.DeviceBodyBytes == 0 {
		cfg.DeviceBodyBytes = 64 << 10
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	// The request log is outermost: observeHTTP renders errors itself, so
	// both see the status sent and the log line carries the final one.
	e.Use(requestLog(cfg.Logger)) // requestlog.go
	if cfg.Observer != nil {
		cfg.OCSP = observedOCSP{OCSP: cfg.OCSP, o: cfg.Observer}
	}
	s := &Server{cfg: cfg, echo: e}
	if cfg.Observer != nil {
		e.Use(s.observeHTTP)
	}
	s.routes()
	var err error
	if s.openapi, err = openAPIDocument(e.Routes()); err != nil {
		return nil, err
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// limitBody caps the request body; reading past the cap fails with
// *http.MaxBytesError, which decode turns into body_too_large.
func limitBody(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Request().ContentLength > n {
				return fault.New(fault.BodyTooLarge, "request body is larger than %d bytes", n)
			}
			c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, n)
			return next(c)
		}
	}
}

// secureHeaders sets headers every API response should carry.
func secureHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		// API answers are data, never a page: should a browser ever render
		// one (an error echoing input, opened in a tab), nothing in it runs
		// and no site can frame it.
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		return next(c)
	}
}

const ctxToken = "gatehouse.admin"

// requireRole authenticates the bearer token (or the browser session) and
// checks its role; package auth decides, this only reads the header and
// turns an unknown token into the invalid_token challenge of RFC 6750.
func (s *Server) requireRole(min auth.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			header := c.Request().Header.Get(echo.HeaderAuthorization)
			if header == "" && hasSessionCookie(c) {
				// A browser: session cookie, CSRF token on changes (session.go).
				return s.sessionAuth(c, min, next)
			}
			scheme, secret, ok := strings.Cut(header, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
				return fault.New(fault.Unauthenticated, "an admin bearer token is required")
			}
			tok, err := s.cfg.AdminTokens.Check(c.Request().Context(), secret, min)
			if fault.Is(err, fault.Unauthenticated) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
			}
			if err != nil {
				return err
			}
			c.Set(ctxToken, tok)
			return next(c)
		}
	}
}

// actor names the authenticated caller in audit events.
func actor(c echo.Context) string {
	if tok, ok := c.Get(ctxToken).(auth.Token); ok {
		return tok.Actor()
	}
	if sess, ok := c.Get(ctxSession).(auth.Session); ok {
		return sess.User.Actor()
	}
	return "anonymous"
}
