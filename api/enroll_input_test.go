package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

var update = flag.Bool("update", false, "rewrite the golden request bodies under testdata/enroll")

const (
	goldenDir = "testdata/enroll"
	// liveToken in a golden body is replaced by a fresh, valid bootstrap
	// token before sending, so CSR checks are reached whatever order the
	// service checks in, and a refusal can be shown not to consume it.
	liveToken = "ghb_LIVE_TOKEN"
	// deadToken is well formed but was never issued.
	deadToken = "ghb_2mVq1s0cGk1qkF4x0bJ8yYpW7ZsQ3nT9uR5vA6eL0dI"
)

// gen builds golden bodies for -update; the files, not this code, are what
// the test sends.
type gen struct {
	t   *testing.T
	csr string // a valid P-256 CSR, PEM
	der []byte // the same CSR, DER
}

func (g gen) body(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		g.t.Fatal(err)
	}
	return b
}

func (g gen) withCSR(csr string) []byte {
	return g.body(map[string]string{"token": liveToken, "csr": csr})
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// enrollGolden maps each static request body in testdata/enroll/<name>.json
// to the status and code POST /api/v1/enroll must answer.
var enrollGolden = []struct {
	name   string
	status int
	code   fault.Code
	build  func(g gen) []byte
}{
	{"empty", 400, fault.InvalidArgument, func(gen) []byte { return nil }},
	{"whitespace", 400, fault.InvalidArgument, func(gen) []byte { return []byte(" \r\n\t ") }},
	{"null", 400, fault.InvalidArgument, func(gen) []byte { return []byte("null") }},
	{"not_json", 400, fault.InvalidArgument, func(gen) []byte { return []byte("token=" + liveToken + "&csr=x") }},
	{"array", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body([]map[string]string{{"token": liveToken, "csr": g.csr}})
	}},
	{"string", 400, fault.InvalidArgument, func(gen) []byte { return []byte(`"` + liveToken + `"`) }},
	{"unknown_field", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]any{"token": liveToken, "csr": g.csr, "role": "admin"})
	}},
	{"two_values", 400, fault.InvalidArgument, func(g gen) []byte {
		one := g.withCSR(g.csr)
		return append(append(one, '\n'), one...)
	}},
	{"trailing_garbage", 400, fault.InvalidArgument, func(g gen) []byte { return append(g.withCSR(g.csr), " x"...) }},
	{"truncated", 400, fault.InvalidArgument, func(g gen) []byte { w := g.withCSR(g.csr); return w[:len(w)/2] }},
	{"token_wrong_type", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]any{"token": 12345, "csr": g.csr})
	}},
	{"csr_wrong_type", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]any{"token": liveToken, "csr": []string{g.csr}})
	}},
	{"missing_token", 401, fault.TokenInvalid, func(g gen) []byte { return g.body(map[string]string{"csr": g.csr}) }},
	{"empty_token", 401, fault.TokenInvalid, func(g gen) []byte { return g.body(map[string]string{"token": "", "csr": g.csr}) }},
	{"unknown_token", 401, fault.TokenInvalid, func(g gen) []byte {
		return g.body(map[string]string{"token": deadToken, "csr": g.csr})
	}},
	{"missing_csr", 400, fault.CSRInvalid, func(g gen) []byte { return g.body(map[string]string{"token": liveToken}) }},
	{"not_pem", 400, fault.CSRInvalid, func(g gen) []byte { return g.withCSR("MIIBDzCBtgIBADAAMFkwEwYHKoZIzj0CAQ") }},
	{"malformed_pem", 400, fault.CSRInvalid, func(g gen) []byte {
		return g.withCSR("-----BEGIN CERTIFICATE REQUEST-----\n!!! not base64 !!!\n-----END CERTIFICATE REQUEST-----\n")
	}},
	{"wrong_block_type", 400, fault.CSRInvalid, func(g gen) []byte { return g.withCSR(selfSignedPEM(g.t)) }},
	{"private_key_block", 400, fault.CSRInvalid, func(g gen) []byte {
		return g.withCSR(string(testpki.KeyPEM(g.t, testpki.Key(g.t, "P-256"))))
	}},
	{"der_garbage", 400, fault.CSRInvalid, func(g gen) []byte {
		return g.withCSR(pemBlock("CERTIFICATE REQUEST", []byte("\x30\x82\x01\x00 this is not DER at all")))
	}},
	{"truncated_der", 400, fault.CSRInvalid, func(g gen) []byte {
		return g.withCSR(pemBlock("CERTIFICATE REQUEST", g.der[:len(g.der)-10]))
	}},
	{"trailing_data", 400, fault.CSRInvalid, func(g gen) []byte { return g.withCSR(g.csr + "extra\n") }},
	{"two_csrs", 400, fault.CSRInvalid, func(g gen) []byte { return g.withCSR(g.csr + g.csr) }},
	{"tampered_signature", 400, fault.CSRInvalid, func(g gen) []byte {
		// Change the signed subject, keep the signature: it no longer verifies.
		der := bytes.Clone(g.der)
		i := bytes.Index(der, []byte("evil-admin"))
		if i < 0 {
			g.t.Fatal("CSR subject not found")
		}
		der[i] = 'E'
		return g.withCSR(pemBlock("CERTIFICATE REQUEST", der))
	}},
	{"bad_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": "../admin"})
	}},
	{"long_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": strings.Repeat("d", 65)})
	}},
	// Browsers and curl drop "." and ".." from URLs: such a device could not
	// be reached in the UI (issue 9).
	{"dot_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": "."})
	}},
	{"dotdot_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": ".."})
	}},
	{"leading_dash_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": "-rf"})
	}},
	{"nul_device_id", 400, fault.InvalidArgument, func(g gen) []byte {
		return g.body(map[string]string{"token": liveToken, "csr": g.csr, "device_id": "a\x00b"})
	}},
}

func selfSignedPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not-a-csr"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der)
}

func writeGolden(t *testing.T) {
	key := testpki.Key(t, "P-256")
	g := gen{t: t, der: testpki.CSR(t, key)}
	g.csr = pemBlock("CERTIFICATE REQUEST", g.der)
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	for _, c := range enrollGolden {
		if err := os.WriteFile(filepath.Join(goldenDir, c.name+".json"), c.build(g), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnrollGoldenBodies sends every static body in testdata/enroll and
// checks the exact status and error code; none may be a server error or
// consume the live token it carries.
func TestEnrollGoldenBodies(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range enrollGolden {
		names = append(names, c.name+".json")
	}
	for _, f := range files {
		if !slices.Contains(names, filepath.Base(f)) {
			t.Errorf("%s has no expectation in enrollGolden", f)
		}
	}
	s := newStack(t, testdb.SQLite(t))
	live := s.token(t)
	for _, c := range enrollGolden {
		t.Run(c.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(goldenDir, c.name+".json"))
			if err != nil {
				t.Fatalf("golden body missing (go test ./api -run TestEnrollGoldenBodies -update): %v", err)
			}
			body = bytes.ReplaceAll(body, []byte(liveToken), []byte(live))
			r := s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json",
				body: bytes.NewReader(body)})
			wantError(t, r, c.status, c.code)
		})
	}
	// Every refusal above left the token unused.
	s.enrollOK(t, live)
}

// TestEnrollBadInputLive covers refusals that need a live server state:
// a spent or expired token, key types the profile refuses, body limits.
func TestEnrollBadInputLive(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	live := s.token(t)
	csrFor := func(t *testing.T, kind string) string { return testpki.CSRPEM(t, testpki.Key(t, kind)) }
	jsonBody := func(t *testing.T, v any) *bytes.Reader {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(b)
	}
	// padded returns an enroll body of exactly n bytes.
	padded := func(t *testing.T, n int) *bytes.Reader {
		b, _ := json.Marshal(apitypes.EnrollRequest{Token: live, CSR: ""})
		pad := n - len(b)
		b, _ = json.Marshal(apitypes.EnrollRequest{Token: live, CSR: strings.Repeat("A", pad)})
		if len(b) != n {
			t.Fatalf("padded body is %d bytes, want %d", len(b), n)
		}
		return bytes.NewReader(b)
	}
	const limit = 64 << 10
	cases := []struct {
		name   string
		req    func(t *testing.T) request
		status int
		code   fault.Code
	}{
		{"used token", func(t *testing.T) request {
			tok := s.token(t)
			s.enrollOK(t, tok)
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: tok, CSR: csrFor(t, "P-256")})}
		}, 409, fault.TokenUsed},
		{"expired token", func(t *testing.T) request {
			tok := s.token(t) // ttl 1h
			s.clock.Advance(time.Hour)
			t.Cleanup(func() { s.clock.Advance(-time.Hour) })
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: tok, CSR: csrFor(t, "P-256")})}
		}, 410, fault.TokenExpired},
		{"RSA-1024", func(t *testing.T) request {
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "RSA-1024")})}
		}, 400, fault.KeyTypeNotAllowed},
		{"RSA-2048 on P-256 profile", func(t *testing.T) request {
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "RSA-2048")})}
		}, 400, fault.KeyTypeNotAllowed},
		{"P-384 on P-256 profile", func(t *testing.T) request {
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-384")})}
		}, 400, fault.KeyTypeNotAllowed},
		{"Ed25519 on P-256 profile", func(t *testing.T) request {
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "Ed25519")})}
		}, 400, fault.KeyTypeNotAllowed},
		{"device id taken", func(t *testing.T) request {
			key := testpki.Key(t, "P-256")
			s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: s.token(t),
				CSR: testpki.CSRPEM(t, key), DeviceID: "taken-1"}, http.StatusCreated, nil)
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-256"), DeviceID: "taken-1"})}
		}, 409, fault.AlreadyExists},
		{"pre-registered device, token not issued for it", func(t *testing.T) request {
			s.call(t, http.MethodPost, "/api/v1/devices", s.admin,
				map[string]any{"id": "reserved-1", "fleet": "default", "profile": "default"}, http.StatusCreated, nil)
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-256"), DeviceID: "reserved-1"})}
		}, 409, fault.AlreadyExists},
		{"csr over 16 KiB", func(t *testing.T) request {
			big := csrFor(t, "P-256") + strings.Repeat(" ", 17<<10)
			return request{body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: big})}
		}, 400, fault.CSRInvalid},
		{"body exactly 64 KiB", func(t *testing.T) request { return request{body: padded(t, limit)} },
			400, fault.CSRInvalid},
		{"body 64 KiB + 1", func(t *testing.T) request { return request{body: padded(t, limit+1)} },
			413, fault.BodyTooLarge},
		{"body 1 MiB", func(t *testing.T) request { return request{body: padded(t, 1<<20)} },
			413, fault.BodyTooLarge},
		{"body 64 KiB + 1 chunked", func(t *testing.T) request { return request{body: padded(t, limit+1), chunked: true} },
			413, fault.BodyTooLarge},
		{"Content-Type text/plain", func(t *testing.T) request {
			return request{contentType: "text/plain", body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-256")})}
		}, 400, fault.InvalidArgument},
		{"Content-Type form", func(t *testing.T) request {
			return request{contentType: "application/x-www-form-urlencoded", body: strings.NewReader("token=" + live)}
		}, 400, fault.InvalidArgument},
		{"Content-Type unparsable", func(t *testing.T) request {
			return request{contentType: "application/json; charset", body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-256")})}
		}, 400, fault.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.req(t)
			r.method, r.path = http.MethodPost, "/api/v1/enroll"
			if r.contentType == "" {
				r.contentType = "application/json"
			}
			wantError(t, s.send(t, r), c.status, c.code)
		})
	}
	// The live token survived every refusal, and JSON with a charset is JSON.
	r := s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json; charset=utf-8",
		body: jsonBody(t, apitypes.EnrollRequest{Token: live, CSR: csrFor(t, "P-256")})})
	if r.status != http.StatusCreated {
		t.Fatalf("live token after refusals: %d %s", r.status, r)
	}
}
