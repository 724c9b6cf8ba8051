package api

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Text at the edge. PostgreSQL refuses NUL bytes and invalid UTF-8 in text
// values (SQLSTATE 22021) where SQLite stores them, so the same request
// answered 500 on one database and 404 or 201 on the other. Every string a
// client sends arrives by three doors — path parameters, query values and
// JSON bodies — and all three are checked here, once, before any handler or
// store sees the text: bad text is a 400 invalid_argument on both databases.

// textProblem says why s cannot be stored as text, or "" when it can.
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character"
	}
	return ""
}

// plainText decodes path parameters, then refuses a request whose path or
// query parameters (names and values) are not storable text.
//
// Echo routes on URL.RawPath when it is set and then hands out path
// parameters still percent-encoded. net/url sets RawPath whenever the
// client's escaping differs from Go's own — %ff, lowercase hex, or %3A for
// ':' as JavaScript's encodeURIComponent writes it — so without decoding
// here "/devices/a%3Ab" looked up the device "a%3Ab", and %ff reached the
// handlers as three harmless ASCII characters while %00 arrived as a NUL.
// Decoded once here, every handler sees the text the client meant.
func plainText(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		names := c.ParamNames()
		if c.Request().URL.RawPath != "" && len(names) > 0 {
			values := make([]string, len(names))
			for i, name := range names {
				v, err := url.PathUnescape(c.Param(name))
				if err != nil {
					return fault.New(fault.InvalidArgument, "path parameter %s is not a valid percent-encoding", name)
				}
				values[i] = v
			}
			c.SetParamValues(values...)
		}
		for _, name := range names {
			if p := textProblem(c.Param(name)); p != "" {
				return fault.New(fault.InvalidArgument, "path parameter %s %s", name, p)
			}
		}
		for name, values := range c.QueryParams() {
			if p := textProblem(name); p != "" {
				return fault.New(fault.InvalidArgument, "query parameter name %q %s", name, p)
			}
			for _, v := range values {
				if p := textProblem(v); p != "" {
					return fault.New(fault.InvalidArgument, "query parameter %s %s", name, p)
				}
			}
		}
		return next(c)
	}
}

// jsonTextProblem checks the text of one syntactically valid JSON value in
// its raw bytes, because decoding hides both faults: encoding/json replaces
// invalid UTF-8 inside strings with U+FFFD without a word (so the server
// would store other text than the client sent), and turns the escape \u0000
// into a NUL. It returns "" when every string, keys included, is storable.
func jsonTextProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "is not valid UTF-8"
	}
	if nulEscape(raw) >= 0 {
		return `holds a NUL character (\u0000) in a string`
	}
	return ""
}

var nulEscapeSeq = []byte(`\u0000`)

// nulEscape returns the offset of the first \u0000 escape in valid JSON, or
// -1. In valid JSON a backslash occurs only inside strings, where it always
// starts an escape; so a \u0000 preceded by an odd number of backslashes is
// the text `\u0000` after an escaped backslash, not a NUL.
func nulEscape(raw []byte) int {
	for off := 0; off < len(raw); {
		i := bytes.Index(raw[off:], nulEscapeSeq)
		if i < 0 {
			return -1
		}
		i += off
		n := 0
		for j := i - 1; j >= 0 && raw[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return i
		}
		off = i + 1
	}
	return -1
}

// userAgent is the request's User-Agent as storable text. The header is
// recorded, not typed by the user: a browser may send Latin-1 bytes in it
// (HTTP allows them; NUL it does not), which must not refuse a login on
// PostgreSQL, so they become U+FFFD instead.
func userAgent(r *http.Request) string {
	return strings.ToValidUTF8(r.UserAgent(), "\uFFFD")
}
