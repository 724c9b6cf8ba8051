package api

import (
	"crypto/x509"
	"encoding/csv"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/store"
)

func (s *Server) enroll(c echo.Context) error {
	var req apitypes.EnrollRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Enroll.Enroll(c.Request().Context(), enroll.Request{Token: req.Token, CSR: []byte(req.CSR), DeviceID: req.DeviceID})
	if err != nil {
		return err
	}
	if res.Repeated {
		// A retry of a committed enrollment: the same certificate, nothing new.
		return c.JSON(http.StatusOK, viewEnroll(res))
	}
	return c.JSON(http.StatusCreated, viewEnroll(res))
}

// currentCert is the certificate a renewal (or its challenge) is about: the
// client certificate of the TLS handshake, which also proves possession of
// its key now, or else the one in the body.
func currentCert(c echo.Context, bodyPEM string) (cert *x509.Certificate, proven bool, err error) {
	if tls := c.Request().TLS; tls != nil && len(tls.PeerCertificates) > 0 {
		return tls.PeerCertificates[0], true, nil
	}
	if bodyPEM == "" {
		return nil, false, nil
	}
	cert, err = enroll.ParseCertificatePEM([]byte(bodyPEM))
	return cert, false, err
}

func (s *Server) renewChallenge(c echo.Context) error {
	var req apitypes.RenewChallengeRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	cert, _, err := currentCert(c, req.Certificate)
	if err != nil {
		return err
	}
	ch, err := s.cfg.Enroll.Challenge(c.Request().Context(), cert)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, apitypes.RenewChallengeResponse{Nonce: ch.Nonce, ExpiresAt: ch.ExpiresAt.UTC()})
}

func (s *Server) renew(c echo.Context) error {
	var req apitypes.RenewRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	rr := enroll.RenewRequest{CSR: []byte(req.CSR)}
	var err error
	if rr.Current, rr.KeyProven, err = currentCert(c, req.Certificate); err != nil {
		return err
	}
	res, err := s.cfg.Enroll.Renew(c.Request().Context(), rr)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewEnroll(res))
}

func (s *Server) caRoot(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/x-pem-file", s.cfg.CA.RootPEM())
}

func (s *Server) caChain(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/x-pem-file", s.cfg.CA.ChainPEM())
}

func (s *Server) version(c echo.Context) error {
	return c.JSON(http.StatusOK, apitypes.Version{Version: s.cfg.Version})
}

func (s *Server) createFleet(c echo.Context) error {
	var b apitypes.FleetRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	f, err := s.cfg.Inventory.CreateFleet(c.Request().Context(), actor(c), store.Fleet{Name: b.Name, Description: b.Description})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewFleet(f))
}

func (s *Server) getFleet(c echo.Context) error {
	f, err := s.cfg.Inventory.GetFleet(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewFleet(f))
}

func (s *Server) listFleets(c echo.Context) error {
	fs, err := s.cfg.Inventory.ListFleets(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.FleetList{Fleets: mapSlice(fs, viewFleet)})
}

func (s *Server) updateFleet(c echo.Context) error {
	var b apitypes.FleetUpdate
	if err := decode(c, &b); err != nil {
		return err
	}
	// PATCH changes only the fields sent, as for devices: {} changes nothing.
	if b.Description == nil {
		return s.getFleet(c)
	}
	f, err := s.cfg.Inventory.UpdateFleet(c.Request().Context(), actor(c), store.Fleet{Name: c.Param("name"), Description: *b.Description})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewFleet(f))
}

func (s *Server) deleteFleet(c echo.Context) error {
	if err := s.cfg.Inventory.DeleteFleet(c.Request().Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// profileOf turns a profile body into a profile, filling the defaults.
func profileOf(b apitypes.ProfileRequest) (store.Profile, error) {
	validity, err := parseDuration("validity", b.Validity)
	if err != nil {
		return store.Profile{}, err
	}
	var window time.Duration
	if b.RenewWindow == "" {
		window = validity / 3
	} else if window, err = parseDuration("renew_window", b.RenewWindow); err != nil {
		return store.Profile{}, err
	}
	p := store.Profile{Name: b.Name, KeyTypes: b.KeyTypes, Validity: validity, RenewWindow: window, Roles: b.Roles}
	if p.SupersededGrace, err = optDuration("superseded_grace", b.SupersededGrace); err != nil {
		return store.Profile{}, err
	}
	if p.RenewAfterExpiry, err = optDuration("renew_after_expiry", b.RenewAfterExpiry); err != nil {
		return store.Profile{}, err
	}
	p.ServerKeygen, p.DeviceIDFrom = b.ServerKeygen, b.DeviceIDFrom
	return p, nil
}

// optDuration parses an optional duration field: "" is nil (the default,
// or unchanged on an update).
func optDuration(field, v string) (*time.Duration, error) {
	if v == "" {
		return nil, nil
	}
	d, err := parseDuration(field, v)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

func (s *Server) createProfile(c echo.Context) error {
	var b apitypes.ProfileRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	p, err := profileOf(b)
	if err != nil {
		return err
	}
	out, err := s.cfg.Inventory.CreateProfile(c.Request().Context(), actor(c), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewProfile(out))
}

func (s *Server) getProfile(c echo.Context) error {
	p, err := s.cfg.Inventory.GetProfile(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewProfile(p))
}

func (s *Server) listProfiles(c echo.Context) error {
	ps, err := s.cfg.Inventory.ListProfiles(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.ProfileList{Profiles: mapSlice(ps, viewProfile)})
}

func (s *Server) updateProfile(c echo.Context) error {
	var b apitypes.ProfileRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Name != "" && b.Name != c.Param("name") {
		return fault.New(fault.InvalidArgument, "a profile cannot be renamed")
	}
	b.Name = c.Param("name")
	p, err := profileOf(b)
	if err != nil {
		return err
	}
	out, err := s.cfg.Inventory.UpdateProfile(c.Request().Context(), actor(c), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewProfile(out))
}

func (s *Server) deleteProfile(c echo.Context) error {
	if err := s.cfg.Inventory.DeleteProfile(c.Request().Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) registerDevice(c echo.Context) error {
	var b apitypes.DeviceRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Inventory.RegisterDevice(c.Request().Context(), actor(c),
		store.Device{ID: b.ID, Fleet: b.Fleet, Profile: b.Profile, Labels: b.Labels})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewDevice(d))
}

func (s *Server) getDevice(c echo.Context) error {
	d, err := s.cfg.Inventory.GetDevice(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewDevice(d))
}

func (s *Server) listDevices(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	if limit == 0 || limit > 1000 {
		limit = 100
	}
	f := store.DeviceFilter{Fleet: c.QueryParam("fleet"), Status: store.DeviceStatus(c.QueryParam("status")),
		Search: c.QueryParam("q"), After: c.QueryParam("after"), Limit: limit}
	if l := c.QueryParam("label"); l != "" {
		var ok bool
		if f.LabelKey, f.LabelValue, ok = strings.Cut(l, "="); !ok || f.LabelKey == "" {
			return fault.New(fault.InvalidArgument, "label must be key=value")
		}
	}
	ds, err := s.cfg.Inventory.ListDevices(c.Request().Context(), f)
	if err != nil {
		return err
	}
	next := ""
	if len(ds) == limit {
		next = ds[len(ds)-1].ID
	}
	return c.JSON(http.StatusOK, apitypes.DeviceList{Devices: mapSlice(ds, viewDevice), Next: next})
}

func (s *Server) listDeviceCertificates(c echo.Context) error {
	cs, err := s.cfg.Inventory.DeviceCertificates(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.CertificateList{Certificates: mapSlice(cs, viewCert)})
}

func (s *Server) updateDevice(c echo.Context) error {
	var b apitypes.DeviceUpdate
	if err := decode(c, &b); err != nil {
		return err
	}
	d, err := s.cfg.Inventory.UpdateDevice(c.Request().Context(), actor(c), c.Param("id"),
		inventory.DeviceUpdate{Profile: b.Profile, Labels: b.Labels})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewDevice(d))
}

func (s *Server) deleteDevice(c echo.Context) error {
	if err := s.cfg.Inventory.DeleteDevice(c.Request().Context(), actor(c), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) createBatch(c echo.Context) error {
	var b apitypes.BatchRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	ttl, err := parseDuration("ttl", b.TTL)
	if err != nil {
		return err
	}
	batch, err := s.cfg.Enroll.CreateBatch(c.Request().Context(), enroll.BatchRequest{
		Fleet: b.Fleet, Profile: b.Profile, Count: b.Count, TTL: ttl, DeviceIDs: b.DeviceIDs, Actor: actor(c)})
	if err != nil {
		return err
	}
	if wantsCSV(c) {
		return writeBatchCSV(c, batch)
	}
	out := apitypes.BatchResponse{Batch: viewBatch(batch.TokenBatch), Tokens: make([]apitypes.Token, len(batch.Tokens))}
	for i, t := range batch.Tokens {
		out.Tokens[i] = apitypes.Token{Token: t.Token, DeviceID: t.DeviceID}
	}
	return c.JSON(http.StatusCreated, out)
}

func wantsCSV(c echo.Context) bool {
	return c.QueryParam("format") == "csv" || c.Request().Header.Get(echo.HeaderAccept) == "text/csv"
}

// writeBatchCSV renders a batch as one row per token, for factory-line tools.
func writeBatchCSV(c echo.Context, b enroll.Batch) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="gatehouse-tokens-`+b.ID+`.csv"`)
	c.Response().WriteHeader(http.StatusCreated)
	w := csv.NewWriter(c.Response())
	_ = w.Write([]string{"token", "device_id", "batch_id", "fleet", "profile", "expires_at"})
	exp := b.ExpiresAt.UTC().Format(time.RFC3339)
	for _, t := range b.Tokens {
		_ = w.Write([]string{t.Token, t.DeviceID, b.ID, b.Fleet, b.Profile, exp})
	}
	w.Flush()
	return w.Error()
}

func (s *Server) getBatch(c echo.Context) error {
	b, err := s.cfg.Batches.GetTokenBatch(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewBatch(b))
}

func (s *Server) listBatches(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	bs, err := s.cfg.Batches.ListTokenBatches(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.TokenBatchList{TokenBatches: mapSlice(bs, viewBatch)})
}

func (s *Server) listAudit(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	since, err := queryTime(c, "since")
	if err != nil {
		return err
	}
	until, err := queryTime(c, "until")
	if err != nil {
		return err
	}
	es, err := s.cfg.Audit.ListAudit(c.Request().Context(), store.AuditFilter{ObjectType: c.QueryParam("object_type"),
		ObjectID: c.QueryParam("object_id"), Actor: c.QueryParam("actor"), Action: c.QueryParam("action"),
		Since: since, Until: until, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.AuditEventList{Events: mapSlice(es, viewAudit)})
}

// verifyAudit walks the audit hash chain (from since, when given). A
// broken chain is an answer (200, ok false), not an error.
func (s *Server) verifyAudit(c echo.Context) error {
	since, err := queryTime(c, "since")
	if err != nil {
		return err
	}
	res, err := s.cfg.Audit.VerifyAuditChain(c.Request().Context(), since)
	if err != nil {
		return err
	}
	out := apitypes.AuditVerification{OK: res.OK, Reason: res.Reason, Checked: res.Checked,
		HeadSeq: res.HeadSeq, HeadHash: res.HeadHash}
	if !res.OK {
		out.FirstBroken = &res.FirstBroken
	}
	return c.JSON(http.StatusOK, out)
}

func mapSlice[T, V any](in []T, f func(T) V) []V {
	out := make([]V, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
