package api

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestIDHeader carries a request's id both ways.
const RequestIDHeader = "X-Request-Id"

const ctxRequestID = "gatehouse.request_id"

// requestLog gives every request an id and logs one line for it once it
// is answered. A client's X-Request-Id is kept only when it is 1–64 of
// [A-Za-z0-9._-]: anything else could forge log fields or carry a secret
// into the log, so it is replaced.
//
// The line holds the route pattern, never the path or the query (a path
// names devices; a query may hold a token), and no header but the id: no
// Authorization, no cookie, no body.
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			id := c.Request().Header.Get(RequestIDHeader)
			if !validRequestID(id) {
				id = newRequestID()
			}
			c.Set(ctxRequestID, id)
			c.Response().Header().Set(RequestIDHeader, id)
			if err := next(c); err != nil {
				// Answer now, so the line has the status the client gets;
				// the handler skips a committed response.
				c.Error(err)
			}
			r := c.Request()
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", c.Path()),
				slog.Int("status", c.Response().Status), slog.Duration("duration", time.Since(start)),
				slog.Int64("bytes", c.Response().Size), slog.String("remote_ip", remoteIP(r)))
			return nil
		}
	}
}

// validRequestID reports whether id matches [A-Za-z0-9._-]{1,64}.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := range len(id) {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID is 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
