package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/est"
)

// routes is the whole HTTP surface of the API listener.
//
// Middleware is attached per route, never to a group: echo's Group.Use
// registers catch-all routes that run the group's middleware, so with role
// groups an unknown path answered 401/403 (whichever group was registered
// last) instead of 404, and a wrong method never reached 405. Everything
// under /api that no route takes goes to apiFallback instead. Every route
// list starts with secureHeaders and plainText (text.go);
// TestBadTextOverEveryRoute walks the router to keep it so.
func (s *Server) routes() {
	e := s.echo
	v1 := e.Group("/api/v1")

	// Device-facing: authenticated by bootstrap token or current certificate.
	dev := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(s.cfg.DeviceBodyBytes)}
	v1.POST("/enroll", s.enroll, dev...)
	v1.POST("/renew", s.renew, dev...)
	v1.POST("/renew/challenge", s.renewChallenge, dev...)
	v1.GET("/ca/root", s.caRoot, dev...)
	v1.GET("/ca/chain", s.caChain, dev...)
	v1.GET("/version", s.version, dev...)
	v1.GET("/openapi.json", s.openAPI, dev...) // public: openapi.go says why

	read := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(s.cfg.MaxBodyBytes), s.requireRole(auth.RoleViewer)}
	write := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(s.cfg.MaxBodyBytes), s.requireRole(auth.RoleOperator)}
	// Policy activation changes every broker decision at once: admins only.
	admin := []echo.MiddlewareFunc{secureHeaders, plainText, limitBody(s.cfg.MaxBodyBytes), s.requireRole(auth.RoleAdmin)}

	v1.GET("/fleets", s.listFleets, read...)
	v1.GET("/fleets/:name", s.getFleet, read...)
	v1.POST("/fleets", s.createFleet, write...)
	v1.PATCH("/fleets/:name", s.updateFleet, write...)
	v1.DELETE("/fleets/:name", s.deleteFleet, write...)

	// IDevID vendors: what lets a device enroll without a token, so
	// registering one is an admin's act; CRLs and allow-lists have body
	// caps of their own (vendors.go).
	v1.GET("/fleets/:fleet/idevid-vendors", s.listVendors, read...)
	v1.GET("/fleets/:fleet/idevid-vendors/:vendor", s.getVendor, read...)
	v1.POST("/fleets/:fleet/idevid-vendors", s.createVendor, admin...)
	v1.PATCH("/fleets/:fleet/idevid-vendors/:vendor", s.updateVendor, admin...)
	v1.DELETE("/fleets/:fleet/idevid-vendors/:vendor", s.deleteVendor, admin...)
	v1.PUT("/fleets/:fleet/idevid-vendors/:vendor/crls", s.putVendorCRL,
		secureHeaders, plainText, limitBody(vendorCRLBytes), s.requireRole(auth.RoleAdmin))
	v1.PUT("/fleets/:fleet/idevid-vendors/:vendor/allowlist", s.putVendorAllowList,
		secureHeaders, plainText, limitBody(allowListBytes), s.requireRole(auth.RoleAdmin))

	v1.GET("/profiles", s.listProfiles, read...)
	v1.GET("/profiles/:name", s.getProfile, read...)
	v1.POST("/profiles", s.createProfile, write...)
	v1.PUT("/profiles/:name", s.updateProfile, write...)
	v1.DELETE("/profiles/:name", s.deleteProfile, write...)

	v1.GET("/devices", s.listDevices, read...)
	v1.GET("/devices/:id", s.getDevice, withDeviceID(read)...)
	v1.GET("/devices/:id/certificates", s.listDeviceCertificates, withDeviceID(read)...)
	v1.POST("/devices", s.registerDevice, write...)
	v1.PATCH("/devices/:id", s.updateDevice, withDeviceID(write)...)
	v1.DELETE("/devices/:id", s.deleteDevice, withDeviceID(write)...)

	v1.GET("/token-batches", s.listBatches, read...)
	v1.GET("/token-batches/:id", s.getBatch, read...)
	v1.POST("/token-batches", s.createBatch, write...)

	v1.GET("/audit", s.listAudit, read...)
	v1.GET("/audit/verify", s.verifyAudit, read...)

	v1.GET("/stats", s.stats, read...)
	v1.GET("/stats/series", s.trafficSeries, read...)
	v1.GET("/certificates", s.listCertificates, read...)
	v1.GET("/decisions/recent-denies", s.recentDenies, read...)

	v1.POST("/devices/:id/revoke", s.revokeDevice, withDeviceID(write)...)
	v1.POST("/devices/:id/suspend", s.suspendDevice, withDeviceID(write)...)
	v1.POST("/devices/:id/reinstate", s.reinstateDevice, withDeviceID(write)...)
	v1.POST("/certificates/:serial/revoke", s.revokeCertificate, write...)
	v1.POST("/token-batches/:id/revoke", s.revokeBatch, write...)
	v1.GET("/revocation-jobs", s.listRevocationJobs, read...)
	v1.GET("/revocation-jobs/:id", s.getRevocationJob, read...)

	v1.GET("/policies", s.listPolicies, read...)
	v1.GET("/policies/diff", s.diffPolicies, read...)
	v1.GET("/policies/:version", s.getPolicy, read...)
	v1.POST("/policies", s.createPolicy, write...)
	v1.POST("/policies/validate", s.validatePolicy, write...)
	v1.POST("/policies/:version/test", s.testPolicy, write...)
	v1.POST("/policies/:version/activate", s.activatePolicy, admin...)
	// A what-if reads only; viewers may ask.
	v1.POST("/decisions/simulate", s.simulate, read...)

	v1.GET("/devices/:id/sessions", s.deviceSessions, withDeviceID(read)...)
	v1.GET("/session-kicks", s.listSessionKicks, read...)

	// OCSP is public and outside /api: its URL is in every leaf's AIA.
	e.POST("/ocsp", s.ocspPost)
	e.GET("/ocsp", s.ocspGet) // no request: malformedRequest, not the UI
	e.GET("/ocsp/*", s.ocspGet)

	// The CRL is public and outside /api: its URL is in every leaf's CRL
	// distribution points (crl.go).
	e.GET("/crl", s.crlDER)
	e.HEAD("/crl", s.crlDER)
	e.GET("/crl/:generation", s.crlDER)
	e.HEAD("/crl/:generation", s.crlDER)
	e.GET("/crl.pem", s.crlPEM)
	e.HEAD("/crl.pem", s.crlPEM)
	v1.GET("/crl", s.crlStatus, read...)

	s.sessionRoutes(v1) // session.go: login, logout, users

	// EST (RFC 7030) is device-facing and outside /api, at the path the
	// RFC fixes; its errors are text (errors.go).
	s.cfg.EST.Mount(e, dev...)

	// The API's own table of routes, for telling 404 from 405.
	for _, r := range e.Routes() {
		s.apiRoutes = append(s.apiRoutes, apiRoute{method: r.Method, segs: strings.Split(r.Path, "/")})
	}
	// EST's paths are the API's too: the UI must not answer them.
	for _, p := range []string{"/api", "/api/*", est.Prefix, est.Prefix + "/*"} {
		e.Any(p, s.apiFallback, secureHeaders)
		e.RouteNotFound(p, s.apiFallback, secureHeaders)
	}
	// The UI serves everything outside /api and EST, and nothing inside them.
	e.Any("/*", echo.WrapHandler(s.cfg.UI))
}

// apiRoute is one registered API route, its path split at slashes.
type apiRoute struct {
	method string
	segs   []string
}

// matches reports whether path segments fit the route's pattern.
func (r apiRoute) matches(segs []string) bool {
	if len(segs) != len(r.segs) {
		return false
	}
	for i, p := range r.segs {
		if strings.HasPrefix(p, ":") {
			if segs[i] == "" {
				return false
			}
		} else if p != segs[i] {
			return false
		}
	}
	return true
}

// apiFallback answers a request under /api that no route took: 405 with an
// Allow header when the path exists for other methods, 404 otherwise.
// Neither needs, nor checks, credentials.
func (s *Server) apiFallback(c echo.Context) error {
	segs := strings.Split(echo.GetPath(c.Request()), "/")
	var allow []string
	for _, r := range s.apiRoutes {
		if r.matches(segs) && !slices.Contains(allow, r.method) {
			allow = append(allow, r.method)
		}
	}
	if len(allow) == 0 {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	allow = append(allow, http.MethodOptions)
	slices.Sort(allow)
	c.Response().Header().Set(echo.HeaderAllow, strings.Join(allow, ", "))
	if c.Request().Method == http.MethodOptions {
		return c.NoContent(http.StatusNoContent)
	}
	return echo.NewHTTPError(http.StatusMethodNotAllowed)
}
