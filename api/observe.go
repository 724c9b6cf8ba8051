package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/ocsp"
)

// Observer learns what the API served, for metrics (package metrics). Its
// arguments are bounded: route patterns, never raw paths. Enrollments are
// counted by the enrollment service itself (enroll.Observer), whichever
// front (this API, EST) called it.
type Observer interface {
	// HTTPServed: one request, by route pattern (RouteUnmatched when no
	// route took it), method and status, after dur.
	HTTPServed(route, method string, status int, dur time.Duration)
	// OCSPAnswered: one OCSP response, by ocsp.Answer.Outcome.
	OCSPAnswered(outcome string)
}

// RouteUnmatched is the route of a request no API route took: an unknown
// path under /api, or one the web UI does not know.
const RouteUnmatched = "unmatched"

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
