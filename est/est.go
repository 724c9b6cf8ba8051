// Package est is Gatehouse's EST server (RFC 7030): thin HTTP handlers under
// /.well-known/est/ that speak the RFC's media types and base64 bodies and
// hand every decision to enroll.Service, so a token or certificate obeys
// the same rules over EST as over /api/v1.
//
// Paths are /.well-known/est/<op> and /.well-known/est/<label>/<op>, where
// label is a profile name ([A-Za-z0-9._-]{1,64}). A label narrows an
// operation to its profile: csrattrs answers that profile's key types, and
// simpleenroll and serverkeygen (simplereenroll) refuse a token
// (certificate) of another profile. Without a label any profile is served.
// serverkeygen is served only for a token whose profile has server_keygen.
//
// simpleenroll authenticates by a bootstrap token as the HTTP Basic
// password or, with no Basic credentials, by a vendor IDevID as the TLS
// client certificate (enroll.Service.EnrollIDevID); under a label the
// IDevID's vendor must enroll into that profile.
package est

import (
	"context"
	"crypto"
	"crypto/x509"
	"net/http"
	"time"

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
	// NotImplemented: what this server does not offer: serverkeygen's
	// key encryption beyond TLS (RFC 7030 §4.4.1.1, §4.4.1.2).
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
	label, err := s.start(c)
	if err != nil {
		return err
	}
	cred, err := credentialOf(c.Request())
	if err != nil {
		return err
	}
	_, csrPEM, err := parseBody(c)
	if err != nil {
		return err
	}
	res, err := s.enrollAs(c.Request().Context(), cred, label, false,
		func(store.Profile) ([]byte, error) { return csrPEM, nil })
	if err != nil {
		return err
	}
	return certsOnly(c, []*x509.Certificate{res.Certificate})
}

// credential is what an EST client enrolls with: the bootstrap token sent
// as the HTTP Basic password, or, with no Basic credentials, the vendor
// IDevID chain sent as TLS client certificate. The handshake proved
// possession of chain[0]'s key but did not verify it (the API listener
// verifies client certificates in the application): enroll.Service checks
// it against the registered vendors.
type credential struct {
	token string
	chain []*x509.Certificate
}

// credentialOf reads the request's credential and refuses, without any
// lookup, one that cannot be good: the cheap refusal comes before the
// CSR's signature is verified. The Basic user name is ignored: libest and
// other stacks send a fixed one ("estuser"), so it cannot name the device.
func credentialOf(r *http.Request) (credential, error) {
	_, token, ok := r.BasicAuth()
	if (!ok || token == "") && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return credential{chain: r.TLS.PeerCertificates}, nil
	}
	if !ok || token == "" {
		return credential{}, fault.New(fault.Unauthenticated, "send the bootstrap token as the HTTP Basic password, or a vendor IDevID as TLS client certificate")
	}
	if !secret.WellFormed(token, enroll.BootstrapPrefix) {
		return credential{}, fault.New(fault.TokenInvalid, "the HTTP Basic password is not a bootstrap token")
	}
	return credential{token: token}, nil
}

// enrollAs is "authenticate, then enroll this CSR", the one way into
// enrollment for simpleenroll and serverkeygen: it finds the profile cred
// enrolls into, refuses a credential of another profile than label's,
// and enrolls the CSR csrFor makes for that profile (the client's own, or
// one for a key the server generates: serverKey). Every rule of the token
// (once, its fleet, profile and fixed id, batch revocation, the profile's
// device_id_from) is enroll.Service's.
func (s *Server) enrollAs(ctx context.Context, cred credential, label store.Profile, serverKey bool,
	csrFor func(store.Profile) ([]byte, error)) (enroll.Result, error) {
	if cred.chain != nil {
		if serverKey {
			// The vendor's profile is only known once the IDevID is
			// verified; a server-made key is for token enrollments.
			return enroll.Result{}, fault.New(fault.PermissionDenied, "serverkeygen takes a bootstrap token; an IDevID enrolls with simpleenroll")
		}
		csrPEM, err := csrFor(store.Profile{})
		if err != nil {
			return enroll.Result{}, err
		}
		return s.cfg.Enroll.EnrollIDevID(ctx, enroll.IDevIDRequest{Chain: cred.chain, CSR: csrPEM, Label: label.Name})
	}
	if label.Name == "" && !serverKey {
		// Nothing to decide before enroll.Service, which reads the token
		// and its profile anyway.
		return s.enroll(ctx, cred, store.Profile{}, false, csrFor)
	}
	tok, profile, err := s.cfg.Store.GetEnrollmentToken(ctx, secret.Hash(cred.token))
	switch {
	case fault.Is(err, fault.NotFound):
		return enroll.Result{}, fault.New(fault.TokenInvalid, "unknown bootstrap token")
	case err != nil:
		return enroll.Result{}, err
	case label.Name != "" && profile.Name != label.Name:
		return enroll.Result{}, fault.New(fault.PermissionDenied, "this token is not for EST label %q", label.Name)
	case serverKey && tok.UsedAt != nil:
		// A key made now could never be the first enrollment's: its
		// retry is token_used (enroll.Request.ServerKey), so no key is
		// made for it.
		return enroll.Result{}, fault.New(fault.TokenUsed, "bootstrap token was already used")
	case serverKey && tok.BatchRevokedAt != nil:
		// Nor for a token enroll.Service will refuse anyway: a key (RSA
		// above all) is the expensive part of the request.
		return enroll.Result{}, fault.New(fault.TokenRevoked, "bootstrap token's batch was revoked")
	case serverKey && !time.Now().Before(tok.ExpiresAt):
		return enroll.Result{}, fault.New(fault.TokenExpired, "bootstrap token has expired")
	}
	return s.enroll(ctx, cred, profile, serverKey, csrFor)
}

// enroll enrolls the CSR csrFor makes for profile with cred.
func (s *Server) enroll(ctx context.Context, cred credential, profile store.Profile, serverKey bool,
	csrFor func(store.Profile) ([]byte, error)) (enroll.Result, error) {
	csrPEM, err := csrFor(profile)
	if err != nil {
		return enroll.Result{}, err
	}
	return s.cfg.Enroll.Enroll(ctx, enroll.Request{Token: cred.token, CSR: csrPEM, ServerKey: serverKey})
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
	if rec.Fingerprint != ca.Fingerprint(cert) {
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

// serverKeygen is RFC 7030 §4.4: the client sends a CSR (whose signature
// must verify, as any), the server generates the key the token's profile
// wants, enrolls a CSR with the client's subject for it, and answers the
// key with the certificate. Only for a profile with server_keygen. The key
// lives in this request's memory only: it is never logged or stored.
func (s *Server) serverKeygen(c echo.Context) error {
	label, err := s.start(c)
	if err != nil {
		return err
	}
	cred, err := credentialOf(c.Request())
	if err != nil {
		return err
	}
	client, _, err := parseBody(c)
	if err != nil {
		return err
	}
	if err := checkKeyDelivery(client); err != nil {
		return err
	}
	var key crypto.Signer
	res, err := s.enrollAs(c.Request().Context(), cred, label, true, func(p store.Profile) ([]byte, error) {
		if !p.KeygenOnServer() {
			return nil, fault.New(fault.PermissionDenied, "serverkeygen is off for profile %s", p.Name)
		}
		var csrPEM []byte
		var err error
		key, csrPEM, err = keyAndCSR(p.KeyTypes, client)
		return csrPEM, err
	})
	if err != nil {
		return err
	}
	body, contentType, err := ServerKeygenBody(key, res.Certificate)
	if err != nil {
		return fault.Wrap(err, fault.Internal, "encode the serverkeygen answer")
	}
	err = c.Blob(http.StatusOK, contentType, body)
	clear(body) // the key's encoding, best effort
	return err
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
