package api

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/ocsp"
)

// OCSP answers DER-encoded OCSP requests (RFC 6960). It always has an
// answer: a request it cannot serve gets an OCSP error status.
type OCSP interface {
	Respond(ctx context.Context, der []byte) ocsp.Answer
}

const ocspResponseType = "application/ocsp-response"

// maxOCSPPath caps the escaped GET path: base64 of the largest request,
// every character percent-encoded.
const maxOCSPPath = 3 * 4 * (ocsp.MaxRequestBytes + 2) / 3

// ocspPost answers POST /ocsp. The status of the request is in the OCSP
// response, so the HTTP status is 200 even for a malformed request.
func (s *Server) ocspPost(c echo.Context) error {
	r := c.Request()
	var der []byte
	if r.ContentLength <= ocsp.MaxRequestBytes {
		// One byte over the cap is enough for the responder to refuse it.
		b, err := io.ReadAll(io.LimitReader(r.Body, ocsp.MaxRequestBytes+1))
		if err == nil {
			der = b
		}
	}
	return writeOCSP(c, s.cfg.OCSP.Respond(r.Context(), der), false)
}

// ocspGet answers GET /ocsp/{url-escaped base64 of the DER request}
// (RFC 6960 Appendix A.1). The base64 may hold '/', so the route is a
// wildcard and the request is taken from the escaped path as sent.
func (s *Server) ocspGet(c echo.Context) error {
	r := c.Request()
	raw, ok := strings.CutPrefix(r.URL.EscapedPath(), "/ocsp/")
	if !ok {
		raw = ""
	}
	return writeOCSP(c, s.cfg.OCSP.Respond(r.Context(), decodeOCSPPath(raw)), true)
}

// decodeOCSPPath undoes the GET encoding; anything that does not decode is
// nil, which the responder answers as malformed. Clients differ in padding
// and in the URL-safe alphabet, so both are accepted.
func decodeOCSPPath(raw string) []byte {
	if raw == "" || len(raw) > maxOCSPPath {
		return nil
	}
	b64, err := url.PathUnescape(raw)
	if err != nil {
		return nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(b64); err == nil {
			return der
		}
	}
	return nil
}

func writeOCSP(c echo.Context, a ocsp.Answer, get bool) error {
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if get && a.MaxAge > 0 {
		// RFC 5019 §6.2: a cache may serve this answer for MaxAge, never
		// past nextUpdate (MaxAge is capped at the answer's validity).
		secs := int(a.MaxAge / time.Second)
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(secs)+", no-transform, must-revalidate")
		h.Set("Last-Modified", a.ThisUpdate.UTC().Format(http.TimeFormat))
		h.Set("Expires", a.ThisUpdate.Add(a.MaxAge).UTC().Format(http.TimeFormat))
	} else {
		h.Set("Cache-Control", "no-store")
	}
	return c.Blob(http.StatusOK, ocspResponseType, a.DER)
}
