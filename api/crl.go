package api

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// CRL serves the certificate revocation list and reports its upkeep.
type CRL interface {
	Serve(ctx context.Context) (*crl.Current, error)
	Status() crl.Status
}

// crlDER serves GET /crl: the DER list, as RFC 5280 distribution points
// expect (application/pkix-crl). No authentication: every leaf names this
// URL, and brokers and devices fetch it anonymously.
//
// /crl/<generation> serves a rotated intermediate's list (ca rotate): the
// leaves of generation 2 and later name it; /crl stays the first
// intermediate's.
func (s *Server) crlDER(c echo.Context) error {
	gen := 0
	if g := c.Param("generation"); g != "" {
		n, err := strconv.Atoi(g)
		if err != nil || n < 1 || strconv.Itoa(n) != g {
			return fault.New(fault.NotFound, "no such CRL")
		}
		gen = n
	}
	return s.serveCRL(c, "application/pkix-crl", func(cur *crl.Current) []byte { return cur.ForGeneration(gen) })
}

// crlPEM serves GET /crl.pem: the same list as PEM, for brokers' crlfile.
func (s *Server) crlPEM(c echo.Context) error {
	return s.serveCRL(c, "application/x-pem-file", func(cur *crl.Current) []byte { return cur.PEM })
}

func (s *Server) serveCRL(c echo.Context, contentType string, body func(*crl.Current) []byte) error {
	cur, err := s.cfg.CRL.Serve(c.Request().Context())
	if err != nil {
		return err
	}
	b := body(cur)
	if b == nil {
		return fault.New(fault.NotFound, "no CRL for that intermediate")
	}
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(echo.HeaderContentType, contentType)
	// The number names the list's content: the same number is the same list.
	h.Set("ETag", `"crl-`+strconv.FormatInt(cur.Number, 10)+`"`)
	// A revocation republishes the list at once, so an HTTP cache must not
	// keep serving the old one for any time: no-cache makes it revalidate
	// on every request, which the ETag (the list's number) turns into a
	// bodyless 304 while the list is unchanged. (A relying party may still
	// keep a list until its nextUpdate; brokers reading crl.file get each
	// new list as it is written.)
	h.Set("Cache-Control", "public, no-cache, no-transform")
	// ServeContent answers conditional (ETag, Last-Modified), HEAD and
	// range requests.
	http.ServeContent(c.Response(), c.Request(), "", cur.ThisUpdate, bytes.NewReader(b))
	return nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// crlStatus serves GET /api/v1/crl: the installed list and its upkeep.
func (s *Server) crlStatus(c echo.Context) error {
	st := s.cfg.CRL.Status()
	v := apitypes.CRLStatus{Number: st.Number, ThisUpdate: optTime(st.ThisUpdate), NextUpdate: optTime(st.NextUpdate),
		Entries: st.Entries, File: st.File, FileWrittenAt: optTime(st.FileWrittenAt), ReloadCommand: st.ReloadCommand,
		LastError: st.LastError, LastErrorAt: optTime(st.LastErrorAt)}
	if r := st.LastReload; r != nil {
		v.LastReload = &apitypes.CRLReload{At: r.At.UTC(), Number: r.Number, DurationMS: r.Duration.Milliseconds(),
			OK: r.Error == "", Error: r.Error, Output: r.Output}
	}
	return c.JSON(http.StatusOK, v)
}
