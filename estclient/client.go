// Package estclient is the device side of EST (RFC 7030): it fetches the CA
// certificates, enrolls with a bootstrap token (HTTP Basic) or a TLS client
// certificate (a vendor IDevID), re-enrolls over mutual TLS with the
// current certificate, has the server generate a key, and reads the CSR
// attributes. Every answer is read strictly and within bounds, since what
// it returns becomes the device's trust anchors, certificate and key; the
// server is trusted only through Config.RootCAs, never the system roots.
//
// Errors carry fault codes: the server's own code when it answers an
// error as EST text (`code: message`), BadResponse when its answer does not
// follow the RFC, fault.Unavailable when no answer came.
package estclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// BadResponse: the EST server's answer does not follow RFC 7030: a wrong
// media type, a body that is not base64, a PKCS#7 that is not certs-only,
// no certificate for the request's key, or a body beyond the bound.
const BadResponse fault.Code = "bad_response"

// Defaults of Config, in one place.
const (
	DefaultTimeout = time.Minute
	// DefaultMaxBody bounds every answer read: a certs-only chain or a
	// server-generated key with its certificate is a few KiB.
	DefaultMaxBody = 1 << 20
)

// Config says which EST server to talk to and how to authenticate.
type Config struct {
	// URL is the server's EST base: https://host[:port] (EST's
	// /.well-known/est is added), or https://host[:port]/.well-known/est,
	// or .../.well-known/est/<label>. EST requires HTTPS.
	URL string
	// RootCAs is the only trust for the server's TLS certificate
	// (required). What cacerts answers becomes the device's trust anchors,
	// so the server must be authenticated by an explicit anchor
	// (RFC 7030 §4.1.1), not by whatever the system trusts.
	RootCAs *x509.CertPool
	// Certificate is the TLS client certificate: a vendor IDevID for
	// simpleenroll and serverkeygen, the current Gatehouse certificate for
	// simplereenroll. It is sent whatever CAs the server's handshake
	// names, as curl and openssl do: a server that takes vendor IDevIDs
	// need not list every vendor.
	Certificate *tls.Certificate
	// Username and Password are sent as HTTP Basic on simpleenroll and
	// serverkeygen when Password is set: the device id (or empty) and the
	// bootstrap token.
	Username, Password string
	// Timeout bounds each request; 0 is DefaultTimeout.
	Timeout time.Duration
	// MaxBody bounds each answer; 0 is DefaultMaxBody.
	MaxBody int64
}

// Client is an EST client of one server (and label).
type Client struct {
	base    string
	cfg     Config
	http    *http.Client
	maxBody int64
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	base, err := baseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.RootCAs == nil {
		return nil, fault.New(fault.InvalidArgument, "estclient: RootCAs is required: the CA file that vouches for the EST server's TLS certificate")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	tlsCfg := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if cert := cfg.Certificate; cert != nil {
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Client{base: base, cfg: cfg, maxBody: cfg.MaxBody, http: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A redirect is refused, not followed: credentials go to the
		// server configured, nowhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// URL is the EST base the client sends to.
func (c *Client) URL() string { return c.base }

// baseURL normalises an EST URL to https://host[:port]/.well-known/est[/label].
func baseURL(raw string) (string, error) {
	bad := fault.New(fault.InvalidArgument, "the EST URL must be https://host[:port][%s[/label]], not %q", est.Prefix, raw)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", bad
	}
	p := strings.TrimSuffix(u.Path, "/")
	switch label, ok := strings.CutPrefix(p, est.Prefix+"/"); {
	case p == "":
		p = est.Prefix
	case p == est.Prefix:
	case ok && labelRE.MatchString(label):
	default:
		return "", bad
	}
	return "https://" + u.Host + p, nil
}

// labelRE is a label's grammar (a Gatehouse profile name).
var labelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CACerts fetches the CA certificates (GET cacerts): the certs-only
// message, in the server's order.
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	res, body, err := c.do(ctx, http.MethodGet, "cacerts", nil, false)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, unexpected(res)
	}
	return certsOnly(res.Header.Get("Content-Type"), body)
}

// SimpleEnroll sends csr (DER PKCS#10) with the bootstrap token or the
// IDevID and returns the certificate issued for its key. It checks the key,
// not the chain: a caller that installs the certificate checks it chains
// to the CACerts answer (as `gatehouse enroll --est` does).
func (c *Client) SimpleEnroll(ctx context.Context, csr []byte) (*x509.Certificate, error) {
	return c.enroll(ctx, "simpleenroll", csr, true)
}

// SimpleReenroll sends csr over mutual TLS with Config.Certificate, the
// current certificate, and returns the certificate issued for csr's key.
func (c *Client) SimpleReenroll(ctx context.Context, csr []byte) (*x509.Certificate, error) {
	if c.cfg.Certificate == nil {
		return nil, fault.New(fault.InvalidArgument, "simplereenroll needs the current certificate as the TLS client certificate")
	}
	return c.enroll(ctx, "simplereenroll", csr, false)
}

func (c *Client) enroll(ctx context.Context, op string, csrDER []byte, basic bool) (*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fault.Wrap(err, fault.CSRInvalid, "the request does not parse as PKCS#10")
	}
	res, body, err := c.do(ctx, http.MethodPost, op, csrDER, basic)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, unexpected(res)
	}
	certs, err := certsOnly(res.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	return certFor(certs, csr.PublicKey)
}

// ServerKey is what serverkeygen answers: a key the server generated and
// the certificate for it.
type ServerKey struct {
	Key         crypto.Signer
	PKCS8       []byte // Key as the server sent it, DER
	Certificate *x509.Certificate
}

// ServerKeygen asks the server to generate the key (RFC 7030 §4.4). The
// server follows csr's key type when the profile allows it and certifies
// a key of its own (§4.4.1): sign csr with a throwaway key of the type
// wanted. It authenticates as SimpleEnroll does, and as there the chain is
// the caller's to check.
func (c *Client) ServerKeygen(ctx context.Context, csr []byte) (ServerKey, error) {
	if _, err := x509.ParseCertificateRequest(csr); err != nil {
		return ServerKey{}, fault.Wrap(err, fault.CSRInvalid, "the request does not parse as PKCS#10")
	}
	res, body, err := c.do(ctx, http.MethodPost, "serverkeygen", csr, true)
	if err != nil {
		return ServerKey{}, err
	}
	if res.StatusCode != http.StatusOK {
		return ServerKey{}, unexpected(res)
	}
	return ParseServerKeygen(res.Header.Get("Content-Type"), body)
}

// CSRAttrs fetches what the server wants in a CSR (GET csrattrs); nil
// when it has nothing to say (204, or 404 as RFC 7030 §4.5.2 allows).
func (c *Client) CSRAttrs(ctx context.Context) ([]Attr, error) {
	res, body, err := c.do(ctx, http.MethodGet, "csrattrs", nil, false)
	if err != nil {
		// A 404 without an EST code is "no attributes"; Gatehouse's
		// not_found is an unknown label, which the caller must hear of.
		if res != nil && res.StatusCode == http.StatusNotFound && !codeLine.Match(firstLine(body)) {
			return nil, nil
		}
		return nil, err
	}
	switch res.StatusCode {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, unexpected(res)
	}
	if err := mediaType(res.Header.Get("Content-Type"), "application/csrattrs", ""); err != nil {
		return nil, err
	}
	der, err := decodeBase64(body)
	if err != nil {
		return nil, err
	}
	attrs, err := ParseCSRAttrs(der)
	if err != nil {
		return nil, fault.Wrap(err, BadResponse, "csrattrs: %s", fault.MessageOf(err))
	}
	return attrs, nil
}

// do sends one request and reads its answer within the bound. A 2xx comes
// back as it is; an error status as the server's fault (see errorOf), with
// the body.
func (c *Client) do(ctx context.Context, method, op string, csr []byte, basic bool) (*http.Response, []byte, error) {
	var rd io.Reader
	if csr != nil {
		rd = strings.NewReader(wrap64(base64.StdEncoding.EncodeToString(csr)))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/"+op, rd)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.InvalidArgument, "bad EST URL %q", c.base)
	}
	if csr != nil {
		req.Header.Set("Content-Type", "application/pkcs10")
		req.Header.Set("Content-Transfer-Encoding", "base64")
	}
	if basic && c.cfg.Password != "" {
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fault.Wrap(err, fault.Unavailable, "no answer from the EST server %s: %v", c.base, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, c.maxBody+1))
	if err != nil {
		return res, nil, fault.Wrap(err, fault.Unavailable, "reading the EST server's answer: %v", err)
	}
	if int64(len(body)) > c.maxBody {
		return res, nil, fault.New(BadResponse, "the EST server's answer is larger than %d bytes", c.maxBody)
	}
	if res.StatusCode/100 == 2 {
		return res, body, nil
	}
	return res, body, errorOf(res, body)
}

// unexpected is the error for a 2xx the operation does not answer with
// (202 is a pending manual approval, RFC 7030 §4.2.3).
func unexpected(res *http.Response) error {
	if res.StatusCode == http.StatusAccepted {
		return fault.New(fault.Unavailable, "the EST server accepted the request for later approval; try again after %s seconds",
			printable(res.Header.Get("Retry-After"), 32))
	}
	return fault.New(BadResponse, "the EST server answered %s", res.Status)
}

// codeLine is an EST error body as Gatehouse writes it: `code: message`.
var codeLine = regexp.MustCompile(`^([a-z][a-z0-9_]{0,63}): (.*)$`)

// errorOf turns an error answer into a fault: a text/plain `code: message`
// keeps the server's code; anything else gets a code from the status.
func errorOf(res *http.Response, body []byte) error {
	first := string(firstLine(body))
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mt == "text/plain" {
		if m := codeLine.FindStringSubmatch(first); m != nil {
			return &fault.Error{Code: fault.Code(m[1]), Message: printable(m[2], 512)}
		}
	}
	var code fault.Code
	switch s := res.StatusCode; {
	case s == http.StatusUnauthorized:
		code = fault.Unauthenticated
	case s == http.StatusForbidden:
		code = fault.PermissionDenied
	case s == http.StatusNotFound:
		code = fault.NotFound
	case s == http.StatusConflict:
		code = fault.Conflict
	case s == http.StatusRequestEntityTooLarge:
		code = fault.BodyTooLarge
	case s == http.StatusTooManyRequests, s >= 500:
		code = fault.Unavailable
	case s >= 400:
		code = fault.InvalidArgument
	default: // 1xx, 3xx: a redirect is not followed
		code = BadResponse
	}
	msg := "the EST server answered " + res.Status
	if loc := res.Header.Get("Location"); res.StatusCode/100 == 3 && loc != "" {
		msg += " to " + printable(loc, 256) + " (redirects are not followed: give that URL)"
	} else if first != "" {
		msg += ": " + printable(first, 200)
	}
	return fault.New(code, "%s", msg)
}

// firstLine is body up to its first line break.
func firstLine(body []byte) []byte {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// printable is s without control characters, cut to n bytes: a server's
// text goes to a terminal and a log.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// certsOnly reads a certs-only answer: its media type, its base64, its
// PKCS#7.
func certsOnly(contentType string, body []byte) ([]*x509.Certificate, error) {
	if err := mediaType(contentType, "application/pkcs7-mime", "certs-only"); err != nil {
		return nil, err
	}
	der, err := decodeBase64(body)
	if err != nil {
		return nil, err
	}
	certs, err := est.ParseCertsOnly(der)
	if err != nil {
		return nil, fault.Wrap(err, BadResponse, "%s", fault.MessageOf(err))
	}
	return certs, nil
}

// mediaType checks a Content-Type: the media type want and, when
// smimeType is set, no smime-type parameter or that one (some servers
// leave it off).
func mediaType(contentType, want, smimeType string) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != want {
		return fault.New(BadResponse, "the EST server answered %q, want %s", printable(contentType, 128), want)
	}
	if st, ok := params["smime-type"]; ok && smimeType != "" && !strings.EqualFold(st, smimeType) {
		return fault.New(BadResponse, "the EST server answered smime-type %q, want %s", printable(st, 64), smimeType)
	}
	return nil
}

// certFor picks the certificate for pub out of an answer: a server may
// send the chain along, but never a certificate for another key.
func certFor(certs []*x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	k, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fault.New(fault.InvalidArgument, "unsupported public key type %T", pub)
	}
	for _, c := range certs {
		if k.Equal(c.PublicKey) {
			return c, nil
		}
	}
	return nil, fault.New(BadResponse, "the EST server's answer holds no certificate for the request's key")
}

// decodeBase64 decodes an EST body: base64 whatever the transfer-encoding
// header says (RFC 8951 §3.1), read as the server reads its own
// (est.DecodeBase64); an empty answer is no answer.
func decodeBase64(body []byte) ([]byte, error) {
	der, err := est.DecodeBase64(body)
	if err != nil {
		return nil, fault.Wrap(err, BadResponse, "the EST server's answer is not base64")
	}
	if len(der) == 0 {
		return nil, fault.New(BadResponse, "the EST server's answer is empty")
	}
	return der, nil
}

// wrap64 breaks base64 into lines of 64, as RFC 2045 wants and openssl
// reads.
func wrap64(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64])
		b.WriteString("\r\n")
		s = s[64:]
	}
	b.WriteString(s)
	b.WriteString("\r\n")
	return b.String()
}
