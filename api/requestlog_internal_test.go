package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/labstack/echo/v4"
)

var requestIDGrammar = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// FuzzRequestID: the hand-written check agrees with the documented grammar
// on any input.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"", "a", "req-1.A_b", "a b", "x\"y", "é", "\x00", string(make([]byte, 65))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validRequestID(id), requestIDGrammar.MatchString(id); got != want {
			t.Fatalf("validRequestID(%q) = %v, grammar says %v", id, got, want)
		}
	})
}

func TestNewRequestIDIsValidAndFresh(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !validRequestID(id) || len(id) != 32 || seen[id] {
			t.Fatalf("new id %q invalid or repeated", id)
		}
		seen[id] = true
	}
}

// BenchmarkRequestLog is the middleware's cost on a trivial route: "bare"
// is echo alone, "logged" adds requestLog writing JSON lines (to
// io.Discard, so the sink's cost is left out).
func BenchmarkRequestLog(b *testing.B) {
	for _, bc := range []struct {
		name string
		mw   []echo.MiddlewareFunc
	}{
		{"bare", nil},
		{"logged", []echo.MiddlewareFunc{requestLog(slog.New(slog.NewJSONHandler(io.Discard, nil)))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := echo.New()
			e.Use(bc.mw...)
			e.GET("/api/v1/devices/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
			req := httptest.NewRequest(http.MethodGet, "/api/v1/devices/d1?q=x", nil)
			req.Header.Set(RequestIDHeader, "bench-1")
			b.ReportAllocs()
			for b.Loop() {
				e.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
