package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/ocsp"
)

// Observer learns what the API served, for metrics (package metrics). Its
// arguments are bounded: route patterns, never raw paths.
type Observer interface {
	// HTTPServed: one request, by route pattern (RouteUnmatched when no
	// route took it), method and status, after dur.
	HTTPServed(route, method string, status int, dur time.Duration)
	// Enrolled: one enrollment or renewal request (kind "enroll",
	// "enroll_idevid" for EST's by vendor certificate, or "renew")
	// answered with code: "ok", "repeated" (a retried enrollment given its
	// certificate again) or the fault code.
	Enrolled(kind, code string)
	// OCSPAnswered: one OCSP response, by ocsp.Answer.Outcome.
	OCSPAnswered(outcome string)
}

// RouteUnmatched is the route of a request no API route took: an unknown
// path under /api, or one the web UI does not know.
const RouteUnmatched = "unmatched"

// enrollKinds are the routes whose answers Observer.Enrolled counts: the
// API's and EST's (whose enrollments answer 200, so a 200 there is not a
// repeat; estRoutes).
var enrollKinds = map[string]string{
	"/api/v1/enroll": "enroll", "/api/v1/renew": "renew",
	est.Prefix + "/simpleenroll": "enroll", est.Prefix + "/:label/simpleenroll": "enroll",
	est.Prefix + "/simplereenroll": "renew", est.Prefix + "/:label/simplereenroll": "renew",
}

// estRoute reports whether route is one of EST's.
func estRoute(route string) bool { return strings.HasPrefix(route, est.Prefix+"/") }

// idevidRequest reports whether an EST simpleenroll authenticates by a
// vendor IDevID (est: a TLS client certificate and no Basic credentials).
func idevidRequest(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	_, pass, ok := r.BasicAuth()
	return !ok || pass == ""
}

// observeHTTP reports every request to the Observer. It renders an error
// itself (c.Error, as echo would after it) so the status it reports is the
// one sent.
func (s *Server) observeHTTP(next echo.HandlerFunc) echo.HandlerFunc {
	o := s.cfg.Observer
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		route := routeLabel(c.Path(), status)
		o.HTTPServed(route, c.Request().Method, status, time.Since(start))
		if kind := enrollKinds[route]; kind != "" && c.Request().Method == http.MethodPost {
			if kind == "enroll" && estRoute(route) && idevidRequest(c.Request()) {
				kind = "enroll_idevid"
			}
			code := enrollCode(kind, status, err)
			if code == "repeated" && estRoute(route) {
				code = "ok"
			}
			o.Enrolled(kind, code)
		}
		return nil
	}
}

// routeLabel is the route pattern echo matched, or RouteUnmatched for the
// catch-alls when they answer that nothing is there (the web UI's "/*"
// serves pages, so only its 404 counts as unmatched).
func routeLabel(path string, status int) string {
	switch {
	case path == "", path == "/api", path == "/api/*":
		return RouteUnmatched
	case path == "/*" && status == http.StatusNotFound:
		return RouteUnmatched
	}
	return path
}

// enrollCode is an enrollment's result code: its fault code on failure.
func enrollCode(kind string, status int, err error) string {
	switch {
	case err != nil:
		return string(codeOf(err))
	case status >= 400:
		return string(fault.Internal)
	case kind == "enroll" && status == http.StatusOK:
		return "repeated"
	}
	return "ok"
}

// codeOf is the fault code errorHandler answers err with.
func codeOf(err error) fault.Code {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return echoError(he).Code
	}
	return fault.CodeOf(err)
}

// observedOCSP reports each OCSP answer's outcome.
type observedOCSP struct {
	OCSP
	o Observer
}

func (r observedOCSP) Respond(ctx context.Context, der []byte) ocsp.Answer {
	a := r.OCSP.Respond(ctx, der)
	r.o.OCSPAnswered(a.Outcome())
	return a
}
