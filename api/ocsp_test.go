package api_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/store"
)

// withOCSP adds the OCSP responder with a delegated signer from the stack's
// CA, after whatever the other options build.
func withOCSP() stackOpt {
	return func(c *stackCfg) {
		prev := c.build
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			if prev != nil {
				prev(t, st, theCA, rec, cfg)
			}
			signer, err := theCA.NewOCSPSigner(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ocsp.New(ocsp.Config{Certs: st, Signer: signer, Issuer: theCA.Intermediate()})
			if err != nil {
				t.Fatal(err)
			}
			cfg.OCSP = r
		}
	}
}

func newOCSPStack(t testing.TB) *policyStack {
	ps := &policyStack{}
	ps.stack = newStack(t, testdb.SQLite(t), withPolicies(&ps.core, &ps.sync), withOCSP())
	return ps
}

// ocspFiles writes what an openssl client holds: the issuer, the trust
// anchor and the leaves.
type ocspFiles struct {
	dir, issuer, root string
}

func writeOCSPFiles(t *testing.T, theCA *ca.CA) ocspFiles {
	t.Helper()
	dir := t.TempDir()
	f := ocspFiles{dir: dir, issuer: filepath.Join(dir, "issuer.pem"), root: filepath.Join(dir, "root.pem")}
	for path, c := range map[string]*x509.Certificate{f.issuer: theCA.Intermediate(), f.root: theCA.Root()} {
		if err := os.WriteFile(path, ca.EncodePEM(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f ocspFiles) leaf(t *testing.T, name string, c *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(f.dir, name+".pem")
	if err := os.WriteFile(p, ca.EncodePEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (apt-get install openssl)")
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// wantOpenSSL checks that openssl verified the response (signature, the
// delegated responder's chain and EKU, the nonce) and what it printed.
func wantOpenSSL(t *testing.T, out string, want ...string) {
	t.Helper()
	t.Log(out)
	if !strings.Contains(out, "Response verify OK") || strings.Contains(out, "WARNING") {
		t.Fatalf("openssl did not verify the response cleanly:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("openssl output lacks %q:\n%s", w, out)
		}
	}
}

// TestOCSPWithOpenSSL: openssl, as a broker or an operator would run it,
// verifies Gatehouse's answers over POST and GET: good before, revoked with
// time and reason after a revocation through the API, unknown for a serial
// Gatehouse never issued, the nonce echoed.
func TestOCSPWithOpenSSL(t *testing.T) {
	s := newOCSPStack(t)
	f := writeOCSPFiles(t, s.ca)
	enrA, _, certA := s.enrollOK(t, s.token(t))
	_, _, certB := s.enrollOK(t, s.token(t))
	a, b := f.leaf(t, "a", certA), f.leaf(t, "b", certB)
	u := s.srv.URL + "/ocsp"
	query := func(extra ...string) string {
		return runOpenSSL(t, append([]string{"ocsp", "-issuer", f.issuer, "-CAfile", f.root, "-url", u}, extra...)...)
	}

	wantOpenSSL(t, query("-cert", a, "-cert", b), a+": good", b+": good", "This Update:", "Next Update:")
	// The nonce openssl sent is in the response extensions (openssl also
	// compares it: a missing or different nonce is a WARNING above).
	wantOpenSSL(t, query("-sha256", "-cert", a, "-resp_text"), a+": good", "OCSP Nonce:", "Responder Id:",
		"X509v3 Extended Key Usage: \n                OCSP Signing", "OCSP No Check")
	wantOpenSSL(t, query("-serial", "0x7e57ab1e"), "0x7e57ab1e: unknown")

	// GET: openssl writes the request, the test sends it as RFC 6960
	// Appendix A.1 says, and openssl checks the saved answer.
	getOK := func(leaf string, want ...string) http.Header {
		req := filepath.Join(f.dir, "req.der")
		runOpenSSL(t, "ocsp", "-issuer", f.issuer, "-cert", leaf, "-no_nonce", "-reqout", req)
		der, err := os.ReadFile(req)
		if err != nil {
			t.Fatal(err)
		}
		r := s.send(t, request{method: "GET", path: "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der))})
		if r.status != 200 || r.header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("GET: %d %s", r.status, r.header.Get("Content-Type"))
		}
		resp := filepath.Join(f.dir, "resp.der")
		if err := os.WriteFile(resp, r.body, 0o644); err != nil {
			t.Fatal(err)
		}
		out := runOpenSSL(t, "ocsp", "-issuer", f.issuer, "-CAfile", f.root, "-cert", leaf, "-respin", resp)
		if !strings.Contains(out, "Response verify OK") {
			t.Fatalf("GET answer:\n%s", out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("GET answer lacks %q:\n%s", w, out)
			}
		}
		return r.header
	}
	// Clients send the base64 escaped or not; '/' and '+' must survive both.
	for i := 1; ; i++ {
		serial := "0x" + strconv.Itoa(7919*i)
		req := filepath.Join(f.dir, "req.der")
		runOpenSSL(t, "ocsp", "-issuer", f.issuer, "-serial", serial, "-no_nonce", "-reqout", req)
		der, err := os.ReadFile(req)
		if err != nil {
			t.Fatal(err)
		}
		b64 := base64.StdEncoding.EncodeToString(der)
		if !strings.Contains(b64, "/") || !strings.Contains(b64, "+") {
			if i > 100 {
				t.Fatal("no request with '/' and '+' in its base64")
			}
			continue
		}
		for _, path := range []string{"/ocsp/" + b64, "/ocsp/" + url.PathEscape(b64), "/ocsp/" + url.QueryEscape(b64)} {
			r := s.send(t, request{method: "GET", path: path})
			resp := filepath.Join(f.dir, "resp.der")
			if err := os.WriteFile(resp, r.body, 0o644); err != nil {
				t.Fatal(err)
			}
			out := runOpenSSL(t, "ocsp", "-issuer", f.issuer, "-CAfile", f.root, "-serial", serial, "-respin", resp)
			if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, serial+": unknown") {
				t.Fatalf("GET %s:\n%s", path, out)
			}
		}
		break
	}
	// A "good" must not be kept by an HTTP cache: it would answer good
	// there after the revocation below.
	h := getOK(a, a+": good")
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET good Cache-Control %q, want no-store", cc)
	}

	s.call(t, "POST", "/api/v1/devices/"+enrA.DeviceID+"/revoke", s.admin, map[string]any{"reason": "keyCompromise"}, 200, nil)
	// The very next answer, over POST and GET, is revoked; B is untouched.
	wantOpenSSL(t, query("-cert", a, "-cert", b), a+": revoked", "Reason: keyCompromise", "Revocation Time:", b+": good")
	h = getOK(a, a+": revoked", "Reason: keyCompromise")
	// Revoked stays revoked: that answer may be cached.
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "max-age=60") || !strings.Contains(cc, "public") {
		t.Errorf("GET revoked Cache-Control %q", cc)
	}
}

// TestOCSPBadHTTPRequests: whatever arrives at /ocsp, the answer is an
// OCSP response with an error status and HTTP 200, never a 4xx/5xx page,
// and never cacheable.
func TestOCSPBadHTTPRequests(t *testing.T) {
	s := newOCSPStack(t)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   []byte
		want   byte // OCSPResponseStatus
	}{
		{"empty POST", "POST", "/ocsp", nil, 1},
		{"garbage POST", "POST", "/ocsp", []byte("hello"), 1},
		{"huge POST", "POST", "/ocsp", bytes.Repeat([]byte{0x30}, 1<<20), 1},
		{"GET not base64", "GET", "/ocsp/%25zz", nil, 1},
		{"GET bad base64", "GET", "/ocsp/!!!!", nil, 1},
		{"GET base64 garbage", "GET", "/ocsp/" + base64.StdEncoding.EncodeToString([]byte("not ocsp")), nil, 1},
		{"GET empty", "GET", "/ocsp/", nil, 1},
		{"GET no slash", "GET", "/ocsp", nil, 1},
		{"GET huge", "GET", "/ocsp/" + strings.Repeat("A", 64<<10), nil, 1},
		{"GET with slashes", "GET", "/ocsp/MA//AA==", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.send(t, request{method: tc.method, path: tc.path, contentType: "application/ocsp-request", body: bytes.NewReader(tc.body)})
			if r.status != 200 || r.header.Get("Content-Type") != "application/ocsp-response" {
				t.Fatalf("HTTP %d %s: %s", r.status, r.header.Get("Content-Type"), r)
			}
			if want := []byte{0x30, 0x03, 0x0a, 0x01, tc.want}; !bytes.Equal(r.body, want) {
				t.Fatalf("body %x, want %x", r.body, want)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
		})
	}
}

// BenchmarkOCSPHandler measures OCSP answers per second through the real
// HTTP handler and store (a fresh nonce-style request each time would not
// change the work: every answer is looked up and signed).
func BenchmarkOCSPHandler(b *testing.B) {
	s := newOCSPStack(b)
	_, _, cert := s.enrollOK(b, s.token(b))
	der := ocspRequestDER(b, s.ca, cert)
	h := s.srv.Config.Handler
	post := func() {
		req := httptest.NewRequest("POST", "/ocsp", bytes.NewReader(der))
		req.Header.Set("Content-Type", "application/ocsp-request")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || w.Body.Len() < 100 {
			b.Fatalf("HTTP %d, %d bytes", w.Code, w.Body.Len())
		}
	}
	b.Run("post", func(b *testing.B) {
		for b.Loop() {
			post()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resp/s")
	})
	b.Run("post-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				post()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resp/s")
	})
}

// ocspRequestDER asks openssl for a request with a nonce, as clients send.
func ocspRequestDER(b testing.TB, theCA *ca.CA, leaf *x509.Certificate) []byte {
	dir := b.TempDir()
	issuer, leafPath, req := filepath.Join(dir, "i.pem"), filepath.Join(dir, "l.pem"), filepath.Join(dir, "r.der")
	if err := os.WriteFile(issuer, ca.EncodePEM(theCA.Intermediate()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(leafPath, ca.EncodePEM(leaf), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("openssl", "ocsp", "-issuer", issuer, "-cert", leafPath, "-reqout", req).CombinedOutput(); err != nil {
		b.Fatalf("openssl: %v\n%s", err, out)
	}
	der, err := os.ReadFile(req)
	if err != nil {
		b.Fatal(err)
	}
	return der
}

// FuzzOCSPHandler: no POST body and no GET path makes the /ocsp handlers
// answer anything but HTTP 200 with an OCSP response.
func FuzzOCSPHandler(f *testing.F) {
	s := newOCSPStack(f)
	_, _, cert := s.enrollOK(f, s.token(f))
	der := ocspRequestDER(f, s.ca, cert)
	h := s.srv.Config.Handler
	f.Add(false, der)
	f.Add(true, []byte(url.PathEscape(base64.StdEncoding.EncodeToString(der))))
	f.Add(true, []byte("MA//AA=="))
	f.Add(true, []byte("%zz/../.."))
	f.Add(false, []byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, get bool, data []byte) {
		req := httptest.NewRequest("POST", "/ocsp", bytes.NewReader(data))
		if get {
			req = httptest.NewRequest("GET", "/ocsp/x", nil)
			req.URL = &url.URL{Path: "/ocsp/" + string(data)}
			req.RequestURI = req.URL.RequestURI()
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body := w.Body.Bytes()
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/ocsp-response" || len(body) < 5 || body[0] != 0x30 {
			t.Fatalf("HTTP %d %q %x", w.Code, w.Header().Get("Content-Type"), body)
		}
	})
}
