package estclient

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// pki is a CA made in the test that issues what the fake server answers.
type pki struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newPKI(t testing.TB, cn string) *pki {
	t.Helper()
	key := testpki.Key(t, "P-256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pki{c, key}
}

// issue certifies pub as cn, a client certificate.
func (p *pki) issue(t testing.TB, cn string, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, pub, p.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// tlsCert is a key and its certificate for a TLS handshake.
func (p *pki) tlsCert(t testing.TB, cn string) *tls.Certificate {
	t.Helper()
	key := testpki.Key(t, "P-256")
	c := p.issue(t, cn, key.Public())
	return &tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

// seen is what the fake server saw of one request.
type seen struct {
	path, user, pass, contentType, cte string
	basic                              bool
	peer                               *x509.Certificate
	csr                                *x509.CertificateRequest
}

// fakeEST is an EST server over TLS that asks for (but does not verify)
// a client certificate, naming a CA no client here has, and records what
// it saw; answer writes the reply.
type fakeEST struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []seen
	answer func(w http.ResponseWriter, r *http.Request, s seen)
}

func newFakeEST(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, s seen)) *fakeEST {
	t.Helper()
	f := &fakeEST{answer: answer}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), cte: r.Header.Get("Content-Transfer-Encoding")}
		s.user, s.pass, s.basic = r.BasicAuth()
		if len(r.TLS.PeerCertificates) > 0 {
			s.peer = r.TLS.PeerCertificates[0]
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			if err == nil {
				s.csr, _ = x509.ParseCertificateRequest(der)
			}
		}
		f.mu.Lock()
		f.seen = append(f.seen, s)
		f.mu.Unlock()
		f.answer(w, r, s)
	}))
	other := x509.NewCertPool()
	other.AddCert(newPKI(t, "someone else").cert)
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, ClientCAs: other}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEST) last(t *testing.T) seen {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("the server saw no request")
	}
	return f.seen[len(f.seen)-1]
}

func (f *fakeEST) client(t *testing.T, cfg Config) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	cfg.RootCAs = pool
	if cfg.URL == "" {
		cfg.URL = f.srv.URL + "/.well-known/est/line"
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeCertsOnly answers certs as EST does.
func writeCertsOnly(t testing.TB, w http.ResponseWriter, certs ...*x509.Certificate) {
	der, err := est.CertsOnly(certs)
	if err != nil {
		t.Error(err)
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
	w.Header().Set("Content-Transfer-Encoding", "base64")
	_, _ = io.WriteString(w, wrap64(base64.StdEncoding.EncodeToString(der)))
}

func TestNewChecksConfig(t *testing.T) {
	pool := x509.NewCertPool()
	for _, tc := range []struct{ url, want string }{
		{"https://gh.example:8443", "https://gh.example:8443/.well-known/est"},
		{"https://gh.example:8443/", "https://gh.example:8443/.well-known/est"},
		{"https://gh.example/.well-known/est", "https://gh.example/.well-known/est"},
		{"https://gh.example/.well-known/est/", "https://gh.example/.well-known/est"},
		{"https://127.0.0.1:1/.well-known/est/line-1", "https://127.0.0.1:1/.well-known/est/line-1"},
		{"http://gh.example", ""},
		{"gh.example:8443", ""},
		{"https://", ""},
		{"https://token@gh.example", ""},
		{"https://gh.example/?x=1", ""},
		{"https://gh.example/#x", ""},
		{"https://gh.example/api/v1", ""},
		{"https://gh.example/.well-known/est/a/b", ""},
		{"https://gh.example/.well-known/est/a%2Fb", ""},
		{"https://gh.example/.well-known/estx", ""},
	} {
		c, err := New(Config{URL: tc.url, RootCAs: pool})
		if tc.want == "" {
			if fault.CodeOf(err) != fault.InvalidArgument {
				t.Errorf("%q: %v, want invalid_argument", tc.url, err)
			}
			continue
		}
		if err != nil || c.URL() != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.url, c, err, tc.want)
		}
	}
	if _, err := New(Config{URL: "https://gh.example"}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Errorf("no RootCAs: %v, want invalid_argument", err)
	}
}

func TestOperations(t *testing.T) {
	ca := newPKI(t, "Gatehouse Issuing")
	root := newPKI(t, "Gatehouse Root")
	vendor := newPKI(t, "Vendor IDevID CA")
	attrs, err := est.CSRAttrs([]string{"P-384", "Ed25519", "P-256"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeEST(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		switch op := s.path[strings.LastIndex(s.path, "/")+1:]; op {
		case "cacerts":
			writeCertsOnly(t, w, ca.cert, root.cert)
		case "simpleenroll", "simplereenroll":
			// The chain comes along, before the leaf: the client picks.
			writeCertsOnly(t, w, ca.cert, ca.issue(t, "cam-1", s.csr.PublicKey))
		case "csrattrs":
			w.Header().Set("Content-Type", "application/csrattrs")
			_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString(attrs))
		}
	})
	ctx := context.Background()

	t.Run("cacerts", func(t *testing.T) {
		chain, err := f.client(t, Config{}).CACerts(ctx)
		if err != nil || len(chain) != 2 || !chain[0].Equal(ca.cert) || !chain[1].Equal(root.cert) {
			t.Fatalf("%d certificates, %v", len(chain), err)
		}
		if s := f.last(t); s.path != "/.well-known/est/line/cacerts" || s.basic || s.peer != nil {
			t.Fatalf("cacerts request %+v", s)
		}
	})

	t.Run("simpleenroll with a token", func(t *testing.T) {
		key := testpki.Key(t, "P-256")
		c := f.client(t, Config{Username: "cam-1", Password: "ghb_secret"})
		cert, err := c.SimpleEnroll(ctx, testpki.CSR(t, key))
		if err != nil {
			t.Fatal(err)
		}
		if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) || cert.Subject.CommonName != "cam-1" {
			t.Fatalf("got the certificate of %s", cert.Subject)
		}
		s := f.last(t)
		if !s.basic || s.user != "cam-1" || s.pass != "ghb_secret" || s.peer != nil || s.contentType != "application/pkcs10" ||
			s.cte != "base64" || s.csr == nil || s.path != "/.well-known/est/line/simpleenroll" {
			t.Fatalf("simpleenroll request %+v", s)
		}
	})

	t.Run("simpleenroll with an IDevID", func(t *testing.T) {
		idevid := vendor.tlsCert(t, "SN-0042")
		c := f.client(t, Config{Certificate: idevid})
		if _, err := c.SimpleEnroll(ctx, testpki.CSR(t, testpki.Key(t, "P-256"))); err != nil {
			t.Fatal(err)
		}
		// Sent although the server's handshake named another CA.
		s := f.last(t)
		if s.basic || s.peer == nil || !s.peer.Equal(idevid.Leaf) {
			t.Fatalf("want the IDevID as client certificate and no Basic auth: %+v", s)
		}
	})

	t.Run("simplereenroll", func(t *testing.T) {
		current := ca.tlsCert(t, "cam-1")
		c := f.client(t, Config{Certificate: current, Password: "ghb_never_sent"})
		if _, err := c.SimpleReenroll(ctx, testpki.CSR(t, testpki.Key(t, "P-256"))); err != nil {
			t.Fatal(err)
		}
		if s := f.last(t); s.basic || s.peer == nil || !s.peer.Equal(current.Leaf) || s.path != "/.well-known/est/line/simplereenroll" {
			t.Fatalf("simplereenroll request %+v", s)
		}
		if _, err := f.client(t, Config{}).SimpleReenroll(ctx, testpki.CSR(t, testpki.Key(t, "P-256"))); fault.CodeOf(err) != fault.InvalidArgument {
			t.Fatalf("simplereenroll without a certificate: %v", err)
		}
	})

	t.Run("csrattrs", func(t *testing.T) {
		got, err := f.client(t, Config{}).CSRAttrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// est.CSRAttrs writes the curves first, in DER SET order (P-384 sorts first).
		if kt := KeyTypes(got); strings.Join(kt, ",") != "P-384,P-256,Ed25519" {
			t.Fatalf("key types %v", kt)
		}
	})

	t.Run("not a CSR", func(t *testing.T) {
		before := len(f.seen)
		if _, err := f.client(t, Config{Password: "x"}).SimpleEnroll(ctx, []byte("nope")); fault.CodeOf(err) != fault.CSRInvalid {
			t.Fatalf("%v, want csr_invalid", err)
		}
		if len(f.seen) != before {
			t.Fatal("a request that does not parse was sent")
		}
	})
}

// TestUntrustedServer: a server the RootCAs do not vouch for gets nothing,
// not even the token.
func TestUntrustedServer(t *testing.T) {
	f := newFakeEST(t, func(w http.ResponseWriter, _ *http.Request, _ seen) { w.WriteHeader(200) })
	pool := x509.NewCertPool()
	pool.AddCert(newPKI(t, "not the server's CA").cert)
	c, err := New(Config{URL: f.srv.URL, RootCAs: pool, Password: "ghb_secret"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SimpleEnroll(context.Background(), testpki.CSR(t, testpki.Key(t, "P-256")))
	if fault.CodeOf(err) != fault.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("%v, want unavailable naming the certificate", err)
	}
	if len(f.seen) != 0 {
		t.Fatal("the untrusted server got the request")
	}
}

func TestBadAnswers(t *testing.T) {
	ca := newPKI(t, "CA")
	good, _ := est.CertsOnly([]*x509.Certificate{ca.cert})
	goodB64 := base64.StdEncoding.EncodeToString(good)
	signed := func(ct, body string) func(w http.ResponseWriter, r *http.Request, s seen) {
		return func(w http.ResponseWriter, _ *http.Request, _ seen) {
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			_, _ = io.WriteString(w, body)
		}
	}
	status := func(code int, ct, body string, hdr ...string) func(w http.ResponseWriter, r *http.Request, s seen) {
		return func(w http.ResponseWriter, _ *http.Request, _ seen) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}
	}
	const p7 = "application/pkcs7-mime; smime-type=certs-only"
	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter, r *http.Request, s seen)
		enroll  bool // simpleenroll, else cacerts
		maxBody int64
		code    fault.Code
		msg     string // in the error
	}{
		{name: "json content type", answer: signed("application/json", goodB64), code: BadResponse, msg: "application/json"},
		{name: "no content type", answer: signed("", goodB64), code: BadResponse},
		{name: "other smime-type", answer: signed("application/pkcs7-mime; smime-type=signed-data", goodB64), code: BadResponse, msg: "smime-type"},
		{name: "bad base64", answer: signed(p7, "%%%not base64%%%"), code: BadResponse, msg: "not base64"},
		{name: "DER instead of base64", answer: signed(p7, string(good)), code: BadResponse, msg: "not base64"},
		{name: "empty body", answer: signed(p7, ""), code: BadResponse, msg: "empty"},
		{name: "truncated PKCS#7", answer: signed(p7, base64.StdEncoding.EncodeToString(good[:len(good)-20])), code: BadResponse, msg: "certs-only"},
		{name: "a certificate, not PKCS#7", answer: signed(p7, base64.StdEncoding.EncodeToString(ca.cert.Raw)), code: BadResponse},
		{name: "certificate for another key", answer: signed(p7, goodB64), enroll: true, code: BadResponse, msg: "no certificate for the request's key"},
		{name: "too large", answer: signed(p7, goodB64), maxBody: 64, code: BadResponse, msg: "larger than 64 bytes"},
		{name: "token_used", answer: status(409, "text/plain; charset=utf-8", "token_used: this token was used\n"), enroll: true,
			code: fault.TokenUsed, msg: "this token was used"},
		{name: "code with control characters", answer: status(401, "text/plain", "token_invalid: bad\x1b[31m token\n"), enroll: true,
			code: fault.TokenInvalid, msg: "bad[31m token"},
		{name: "a code that is not one", answer: status(400, "text/plain", "Bad Request: no\n"), code: fault.InvalidArgument, msg: "400 Bad Request: Bad Request: no"},
		{name: "html 404", answer: status(404, "text/html", "<html>not_found: x</html>"), code: fault.NotFound},
		{name: "html 503", answer: status(503, "text/html", "<h1>down</h1>"), code: fault.Unavailable, msg: "<h1>down</h1>"},
		{name: "401 without text", answer: status(401, "", ""), enroll: true, code: fault.Unauthenticated},
		{name: "pending approval", answer: status(202, "text/plain", "", "Retry-After", "60"), enroll: true, code: fault.Unavailable, msg: "after 60 seconds"},
		{name: "redirect", answer: status(302, "text/plain", "", "Location", "https://elsewhere.example/est"), enroll: true,
			code: BadResponse, msg: "https://elsewhere.example/est"},
		{name: "204 for cacerts", answer: status(204, "", ""), code: BadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEST(t, tc.answer)
			c := f.client(t, Config{Password: "ghb_secret", MaxBody: tc.maxBody})
			var err error
			if tc.enroll {
				_, err = c.SimpleEnroll(context.Background(), testpki.CSR(t, testpki.Key(t, "P-256")))
			} else {
				_, err = c.CACerts(context.Background())
			}
			if fault.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%v, want %s with %q", err, tc.code, tc.msg)
			}
			if strings.Contains(err.Error(), "ghb_secret") {
				t.Fatal("the token is in the error")
			}
		})
	}
}

func TestCSRAttrsAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		ct     string
		body   string
		code   fault.Code
	}{
		{"204", 204, "", "", ""},
		{"404 without a code", 404, "text/html", "<p>no</p>", ""},
		{"unknown label", 404, "text/plain", "not_found: no EST label \"x\"\n", fault.NotFound},
		{"wrong type", 200, "application/pkcs7-mime", "MAA=", BadResponse},
		{"not a SEQUENCE", 200, "application/csrattrs", base64.StdEncoding.EncodeToString([]byte{5, 0}), BadResponse},
		{"empty SEQUENCE", 200, "application/csrattrs", "MAA=", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEST(t, func(w http.ResponseWriter, _ *http.Request, _ seen) {
				if tc.ct != "" {
					w.Header().Set("Content-Type", tc.ct)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			attrs, err := f.client(t, Config{}).CSRAttrs(context.Background())
			if fault.CodeOf(err) != tc.code || attrs != nil {
				t.Fatalf("%v %v, want code %q and no attributes", attrs, err, tc.code)
			}
		})
	}
}
