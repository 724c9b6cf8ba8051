package api

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// Vendor PKIs of a fleet for IDevID enrollment (package vendors). CRLs and
// allow-lists are not JSON: a CRL is sent as the vendor publishes it (PEM
// or DER) and an allow-list as the CSV a factory exports, so each has a
// body cap of its own, above the admin JSON cap.
const (
	vendorCRLBytes = 32 << 20
	allowListBytes = 128 << 20
)

func (s *Server) listVendors(c echo.Context) error {
	ctx := c.Request().Context()
	fleet := c.Param("fleet")
	// An unknown fleet is 404, not an empty list.
	if _, err := s.cfg.Inventory.GetFleet(ctx, fleet); err != nil {
		return err
	}
	vs, err := s.cfg.Vendors.List(ctx, fleet)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.IDevIDVendorList{Vendors: mapSlice(vs, viewVendor)})
}

func (s *Server) createVendor(c echo.Context) error {
	var b apitypes.IDevIDVendorRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	v, err := s.cfg.Vendors.Create(c.Request().Context(), actor(c), store.IDevIDVendor{Fleet: c.Param("fleet"), Name: b.Name,
		Profile: b.Profile, AnchorsPEM: b.AnchorsPEM, IntermediatesPEM: b.IntermediatesPEM, IDFrom: b.IDFrom,
		IDPrefix: b.IDPrefix, AllowReenroll: b.AllowReenroll, RequireAllowList: b.RequireAllowList})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewVendorFull(v))
}

func (s *Server) getVendor(c echo.Context) error {
	v, err := s.cfg.Vendors.Get(c.Request().Context(), c.Param("fleet"), c.Param("vendor"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewVendorFull(v))
}

func (s *Server) updateVendor(c echo.Context) error {
	var b apitypes.IDevIDVendorUpdate
	if err := decode(c, &b); err != nil {
		return err
	}
	v, err := s.cfg.Vendors.Update(c.Request().Context(), actor(c), c.Param("fleet"), c.Param("vendor"), vendors.Patch{
		Profile: b.Profile, IDFrom: b.IDFrom, IDPrefix: b.IDPrefix, AnchorsPEM: b.AnchorsPEM,
		IntermediatesPEM: b.IntermediatesPEM, AllowReenroll: b.AllowReenroll, RequireAllowList: b.RequireAllowList})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewVendorFull(v))
}

func (s *Server) deleteVendor(c echo.Context) error {
	if err := s.cfg.Vendors.Delete(c.Request().Context(), actor(c), c.Param("fleet"), c.Param("vendor")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) putVendorCRL(c echo.Context) error {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return decodeError(err)
	}
	if len(data) == 0 {
		return fault.New(fault.InvalidArgument, "request body is empty: send the CRL, PEM or DER")
	}
	crl, err := s.cfg.Vendors.ImportCRL(c.Request().Context(), actor(c), c.Param("fleet"), c.Param("vendor"), data)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewVendorCRL(crl))
}

func (s *Server) putVendorAllowList(c echo.Context) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "text/csv" && mt != echo.MIMETextPlain) {
			return fault.New(fault.InvalidArgument, "Content-Type must be text/csv")
		}
	}
	// The CSV is parsed as it arrives; a body over the cap surfaces as a
	// read error inside the parser, which must still answer 413.
	body := &capturedReader{r: c.Request().Body}
	n, err := s.cfg.Vendors.ReplaceAllowList(c.Request().Context(), actor(c), c.Param("fleet"), c.Param("vendor"), body)
	if body.err != nil {
		return decodeError(body.err)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.AllowListResult{Fleet: c.Param("fleet"), Vendor: c.Param("vendor"), Count: n})
}

// capturedReader remembers a read error other than EOF.
type capturedReader struct {
	r   io.Reader
	err error
}

func (r *capturedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && r.err == nil {
		r.err = err
	}
	return n, err
}

// viewVendor is a vendor in a list: what its PEMs say, not the PEMs
// (mapSlice never returns nil, so no list is null).
func viewVendor(v vendors.Vendor) apitypes.IDevIDVendor {
	certs := func(cs []vendors.Cert) []apitypes.VendorCert {
		return mapSlice(cs, func(c vendors.Cert) apitypes.VendorCert {
			return apitypes.VendorCert{Subject: c.Subject, Fingerprint: c.Fingerprint, NotAfter: c.NotAfter}
		})
	}
	return apitypes.IDevIDVendor{Fleet: v.Fleet, Name: v.Name, Profile: v.Profile, IDFrom: v.IDFrom, IDPrefix: v.IDPrefix,
		AllowReenroll: v.AllowReenroll, RequireAllowList: v.RequireAllowList, Anchors: certs(v.Anchors),
		Intermediates: certs(v.Intermediates), CRLs: mapSlice(v.CRLList, viewVendorCRL),
		AllowListSize: v.AllowListSize, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt}
}

// viewVendorFull is one vendor, with its PEMs.
func viewVendorFull(v vendors.Vendor) apitypes.IDevIDVendor {
	out := viewVendor(v)
	out.AnchorsPEM, out.IntermediatesPEM = v.AnchorsPEM, v.IntermediatesPEM
	return out
}

func viewVendorCRL(c vendors.CRL) apitypes.VendorCRL {
	return apitypes.VendorCRL{Issuer: c.Issuer, Number: c.Number, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate,
		Entries: c.Entries, Stale: c.Stale}
}
