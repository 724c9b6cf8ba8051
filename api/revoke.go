package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/revoke"
)

// RevokeRequest is the body of the revoke, suspend and reinstate calls.
// Reason is an RFC 5280 reason name (revocations only).
type RevokeRequest struct {
	Reason string `json:"reason"`
	Note   string `json:"note"`
}

func (s *Server) revokeDevice(c echo.Context) error {
	var b RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	serials, err := s.cfg.Revoke.RevokeDevice(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Reason: b.Reason, Note: b.Note})
	if err != nil {
		return err
	}
	if serials == nil {
		serials = []string{}
	}
	return c.JSON(http.StatusOK, map[string]any{"device": c.Param("id"), "status": "revoked", "revoked_serials": serials})
}

func (s *Server) revokeCertificate(c echo.Context) error {
	var b RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	cert, err := s.cfg.Revoke.RevokeCertificate(c.Request().Context(), c.Param("serial"), revoke.Request{Actor: actor(c), Reason: b.Reason, Note: b.Note})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewCert(cert))
}

func (s *Server) suspendDevice(c echo.Context) error {
	var b RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Revoke.Suspend(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Note: b.Note})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewDevice(d))
}

func (s *Server) reinstateDevice(c echo.Context) error {
	var b RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Revoke.Reinstate(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Note: b.Note})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewDevice(d))
}
