package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// TestESTErrorHeaders: an EST 503 says when to retry (RFC 7030 §4.2.3) and
// a 401 names the Basic realm; the API's own 503 is JSON without either.
func TestESTErrorHeaders(t *testing.T) {
	h := errorHandler(slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		path       string
		err        error
		status     int
		retryAfter string
		realm      bool
	}{
		{est.Prefix + "/simpleenroll", fault.New(fault.Unavailable, "a token held by another request"), 503, estRetryAfter, false},
		{est.Prefix + "/line/serverkeygen", fault.New(fault.Unavailable, "database busy"), 503, estRetryAfter, false},
		{est.Prefix + "/simpleenroll", fault.New(fault.TokenInvalid, "unknown"), 401, "", true},
		{est.Prefix + "/serverkeygen", fault.New(fault.PermissionDenied, "serverkeygen is off for profile p"), 403, "", false},
		{"/api/v1/enroll", fault.New(fault.Unavailable, "database busy"), 503, "", false},
	} {
		rec := httptest.NewRecorder()
		c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, tc.path, nil), rec)
		h(tc.err, c)
		if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retryAfter ||
			(rec.Header().Get("WWW-Authenticate") != "") != tc.realm {
			t.Errorf("%s %v: %d, Retry-After %q, WWW-Authenticate %q", tc.path, tc.err, rec.Code,
				rec.Header().Get("Retry-After"), rec.Header().Get("WWW-Authenticate"))
		}
	}
}
