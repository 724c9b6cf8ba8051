package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/revoke"
)

// A change that is committed while a follow-up (decision-core refresh,
// session kick, CRL) lags is a success: 200 with the lagging parts listed in
// "warnings", not a 5xx that would read as "not revoked". Each follow-up
// catches up by itself; repeating the call is harmless (a second revoke of
// the same device or certificate changes nothing and republishes).

func (s *Server) revokeDevice(c echo.Context) error {
	var b apitypes.RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	serials, err := s.cfg.Revoke.RevokeDevice(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Reason: b.Reason, Note: b.Note})
	warnings, err := revoke.Warnings(err)
	if err != nil {
		return err
	}
	if serials == nil {
		serials = []string{}
	}
	return c.JSON(http.StatusOK, apitypes.DeviceRevocation{Device: c.Param("id"), Status: "revoked",
		RevokedSerials: serials, Warnings: warnings})
}

func (s *Server) revokeCertificate(c echo.Context) error {
	var b apitypes.RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	cert, err := s.cfg.Revoke.RevokeCertificate(c.Request().Context(), c.Param("serial"), revoke.Request{Actor: actor(c), Reason: b.Reason, Note: b.Note})
	warnings, err := revoke.Warnings(err)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.CertificateResult{Certificate: viewCert(cert), Warnings: warnings})
}

func (s *Server) suspendDevice(c echo.Context) error {
	var b apitypes.RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Revoke.Suspend(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Note: b.Note})
	warnings, err := revoke.Warnings(err)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.DeviceResult{Device: viewDevice(d), Warnings: warnings})
}

func (s *Server) reinstateDevice(c echo.Context) error {
	var b apitypes.RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Revoke.Reinstate(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Note: b.Note})
	warnings, err := revoke.Warnings(err)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.DeviceResult{Device: viewDevice(d), Warnings: warnings})
}
