// Package est is Gatehouse's EST server (RFC 7030): thin HTTP handlers under
// /.well-known/est/ that speak the RFC's media types and base64 bodies and
// hand every decision to enroll.Service, so a token or certificate obeys
// the same rules over EST as over /api/v1.
//
// Paths are /.well-known/est/<op> and /.well-known/est/<label>/<op>, where
// label is a profile name ([A-Za-z0-9._-]{1,64}). A label narrows an
// operation to its profile: csrattrs answers that profile's key types, and
// simpleenroll (simplereenroll) refuses a token (certificate) of another
// profile. Without a label any profile is served.
//
// simpleenroll authenticates by a bootstrap token as the HTTP Basic
// password or, with no Basic credentials, by a vendor IDevID as the TLS
// client certificate (enroll.Service.EnrollIDevID); under a label the
// IDevID's vendor must enroll into that profile.
package est

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Codes of EST's own refusals; api/errors.go maps them to statuses.
const (
	// TLSRequired: an EST request that did not arrive over TLS. EST
	// requires HTTPS (RFC 7030 §3.2.2), and simplereenroll needs the
	// handshake's client certificate.
	TLSRequired fault.Code = "tls_required"
	// NotImplemented: an EST operation this server does not offer
	// (serverkeygen).
	NotImplemented fault.Code = "not_implemented"
)

// Prefix starts every EST path.
const Prefix = "/.well-known/est"

// Realm is the HTTP Basic realm of a 401 answer.
const Realm = "gatehouse-est"

// Enroller issues certificates (enroll.Service).
type Enroller interface {
	Enroll(ctx context.Context, req enroll.Request) (enroll.Result, error)
	Renew(ctx context.Context, req enroll.RenewRequest) (enroll.Result, error)
	EnrollIDevID(ctx context.Context, req enroll.IDevIDRequest) (enroll.Result, error)
}

// CA publishes the issuing chain (ca.CA).
type CA interface {
	ChainPEM() []byte
}

// Store reads what a label check needs (store.Store).
type Store interface {
	GetProfile(ctx context.Context, name string) (store.Profile, error)
	GetEnrollmentToken(ctx context.Context, hash string) (store.BootstrapToken, store.Profile, error)
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	GetDevice(ctx context.Context, id string) (store.Device, error)
}

var (
	_ Enroller = (*enroll.Service)(nil)
	_ CA       = (*ca.CA)(nil)
	_ Store    = (*store.Store)(nil)
)

// Config wires the server; every field is required.
type Config struct {
	Enroll Enroller
	CA     CA
	Store  Store
}

// Server is the EST endpoint set.
type Server struct{ cfg Config }

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Enroll == nil || cfg.CA == nil || cfg.Store == nil {
		return nil, fault.New(fault.InvalidArgument, "est: Enroll, CA and Store are required")
	}
	return &Server{cfg: cfg}, nil
}

// Mount registers the EST routes on e, each behind mw.
func (s *Server) Mount(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	for _, base := range []string{Prefix, Prefix + "/:label"} {
		e.GET(base+"/cacerts", s.cacerts, mw...)
		e.POST(base+"/simpleenroll", s.simpleEnroll, mw...)
		e.POST(base+"/simplereenroll", s.simpleReenroll, mw...)
		e.GET(base+"/csrattrs", s.csrAttrs, mw...)
		e.POST(base+"/serverkeygen", s.serverKeygen, mw...)
	}
}

// start refuses a request that did not come over TLS and returns the
// label's profile, or the zero profile without a label.
func (s *Server) start(c echo.Context) (store.Profile, error) {
	if c.Request().TLS == nil {
		return store.Profile{}, fault.New(TLSRequired, "EST is served over HTTPS only")
	}
	label := c.Param("label")
	if label == "" {
		return store.Profile{}, nil
	}
	if !ca.ValidName(label) {
		return store.Profile{}, fault.New(fault.NotFound, "no EST label %q", label)
	}
	p, err := s.cfg.Store.GetProfile(c.Request().Context(), label)
	if fault.Is(err, fault.NotFound) {
		return store.Profile{}, fault.New(fault.NotFound, "no EST label %q", label)
	}
	return p, err
}

func (s *Server) cacerts(c echo.Context) error {
	if _, err := s.start(c); err != nil {
		return err
	}
	chain, err := parseChain(s.cfg.CA.ChainPEM())
	if err != nil {
		return fault.Wrap(err, fault.Internal, "the CA chain does not parse")
	}
	return certsOnly(c, chain)
}

func (s *Server) simpleEnroll(c echo.Context) error {
	profile, err := s.start(c)
	if err != nil {
		return err
	}
	user, token, ok := c.Request().BasicAuth()
	if (!ok || token == "") && len(c.Request().TLS.PeerCertificates) > 0 {
		return s.idevidEnroll(c, profile)
	}
	if !ok || token == "" {
		return fault.New(fault.Unauthenticated, "send the bootstrap token as the HTTP Basic password, or a vendor IDevID as TLS client certificate")
	}
	_, csrPEM, err := parseBody(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if profile.Name != "" {
		if err := s.tokenOfProfile(ctx, token, profile.Name); err != nil {
			return err
		}
	}
	res, err := s.cfg.Enroll.Enroll(ctx, enroll.Request{Token: token, CSR: csrPEM, DeviceID: user})
	if err != nil {
		return err
	}
	return certsOnly(c, []*x509.Certificate{res.Certificate})
}

// idevidEnroll enrolls by the vendor IDevID the client sent as its TLS
// certificate (no Basic credentials): the handshake proved possession of
// its key, which the handshake does not verify (the API listener verifies
// client certificates in the application); enroll.Service checks it
// against the registered vendors, and under a label the vendor's profile
// must be the label.
func (s *Server) idevidEnroll(c echo.Context, profile store.Profile) error {
	_, csrPEM, err := parseBody(c)
	if err != nil {
		return err
	}
	res, err := s.cfg.Enroll.EnrollIDevID(c.Request().Context(), enroll.IDevIDRequest{
		Chain: c.Request().TLS.PeerCertificates, CSR: csrPEM, Label: profile.Name})
	if err != nil {
		return err
	}
	return certsOnly(c, []*x509.Certificate{res.Certificate})
}

// tokenOfProfile refuses a token whose batch is not for profile. Every other
// check of the token is enroll.Service's.
func (s *Server) tokenOfProfile(ctx context.Context, token, profile string) error {
	_, p, err := s.cfg.Store.GetEnrollmentToken(ctx, secret.Hash(token))
	if fault.Is(err, fault.NotFound) {
		return fault.New(fault.TokenInvalid, "unknown bootstrap token")
	}
	if err != nil {
		return err
	}
	if p.Name != profile {
		return fault.New(fault.PermissionDenied, "this token is not for EST label %q", profile)
	}
	return nil
}

func (s *Server) simpleReenroll(c echo.Context) error {
	profile, err := s.start(c)
	if err != nil {
		return err
	}
	if len(c.Request().TLS.PeerCertificates) == 0 {
		return fault.New(fault.Unauthenticated, "simplereenroll needs the current certificate as TLS client certificate")
	}
	current := c.Request().TLS.PeerCertificates[0]
	_, csrPEM, err := parseBody(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if profile.Name != "" {
		if err := s.certOfProfile(ctx, current, profile.Name); err != nil {
			return err
		}
	}
	// The handshake proved possession of current's key just now, as for
	// /api/v1/renew over mutual TLS.
	res, err := s.cfg.Enroll.Renew(ctx, enroll.RenewRequest{Current: current, CSR: csrPEM, KeyProven: true})
	if err != nil {
		return err
	}
	return certsOnly(c, []*x509.Certificate{res.Certificate})
}

// certOfProfile refuses a certificate whose device is not of profile. An
// unknown certificate passes: Renew refuses it with its own code. The
// handshake did not verify cert (apiTLS), so a certificate is known only
// if its bytes are the record's: a foreign one that copies a serial
// learns nothing of that serial's device here.
func (s *Server) certOfProfile(ctx context.Context, cert *x509.Certificate, profile string) error {
	rec, err := s.cfg.Store.GetCertificate(ctx, ca.SerialHex(cert.SerialNumber))
	if fault.Is(err, fault.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if fp := sha256.Sum256(cert.Raw); rec.Fingerprint != hex.EncodeToString(fp[:]) {
		return nil
	}
	dev, err := s.cfg.Store.GetDevice(ctx, rec.DeviceID)
	if fault.Is(err, fault.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if dev.Profile != profile {
		return fault.New(fault.PermissionDenied, "this certificate is not for EST label %q", profile)
	}
	return nil
}

func (s *Server) csrAttrs(c echo.Context) error {
	profile, err := s.start(c)
	if err != nil {
		return err
	}
	der, err := CSRAttrs(profile.KeyTypes)
	if err != nil {
		return fault.Wrap(err, fault.Internal, "encode csr attributes")
	}
	if der == nil {
		return c.NoContent(http.StatusNoContent)
	}
	c.Response().Header().Set("Content-Transfer-Encoding", "base64")
	return c.Blob(http.StatusOK, "application/csrattrs", encodeBase64(der))
}

func (s *Server) serverKeygen(c echo.Context) error {
	if _, err := s.start(c); err != nil {
		return err
	}
	return fault.New(NotImplemented, "serverkeygen is not offered: generate the key on the device and use simpleenroll")
}

func parseBody(c echo.Context) (*x509.CertificateRequest, []byte, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, nil, err
	}
	h := c.Request().Header
	return ParseCSR(h.Get("Content-Type"), h.Get("Content-Transfer-Encoding"), body)
}

// certsOnly answers certs as a base64 PKCS#7 certs-only message.
func certsOnly(c echo.Context, certs []*x509.Certificate) error {
	der, err := CertsOnly(certs)
	if err != nil {
		return fault.Wrap(err, fault.Internal, "encode certs-only")
	}
	c.Response().Header().Set("Content-Transfer-Encoding", "base64")
	return c.Blob(http.StatusOK, "application/pkcs7-mime; smime-type=certs-only", encodeBase64(der))
}
