package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/metrics"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/series"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

var caPass = []byte("correct horse battery staple")

// clock is real time plus an offset that a test can move forward; the store,
// the CA and the enrollment service all read it.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

// stack is the whole Gatehouse API over a real database and a real CA.
type stack struct {
	srv    *httptest.Server
	st     *store.Store
	ca     *ca.CA
	clock  *clock
	admin  string // bearer secret, role admin
	viewer string // bearer secret, role viewer
}

type stackCfg struct {
	api api.Config
	tls bool
	// build, when set, adds components that need the stack's store and CA.
	build func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config)
}

type stackOpt func(*stackCfg)

// withUI mounts a UI handler, as the server binary does.
func withUI(h http.Handler) stackOpt { return func(c *stackCfg) { c.api.UI = h } }

// withTLS serves over TLS and asks clients for a certificate without
// verifying it: the renew handler verifies it against the CA.
func withTLS() stackOpt { return func(c *stackCfg) { c.tls = true } }

// newStack builds store, CA, audit and every API dependency (fullConfig) on
// dsn, applies opts and serves it; fleet "default", profile "default", an admin and a viewer token
// are seeded.
func newStack(t testing.TB, dsn string, opts ...stackOpt) *stack {
	t.Helper()
	ctx := context.Background()
	clk := &clock{}
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	st.SetClock(clk.Now)
	theCA := newCA(t, st, clk.Now)
	rec := audit.New(st, nil)
	cfg := stackCfg{api: fullConfig(t, st, theCA, rec, clk.Now)}
	inv := cfg.api.Inventory
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.build != nil {
		cfg.build(t, st, theCA, rec, &cfg.api)
	}
	h, err := api.New(cfg.api)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if cfg.tls {
		srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)

	s := &stack{srv: srv, st: st, ca: theCA, clock: clk,
		admin: secret.New(auth.TokenPrefix), viewer: secret.New(auth.TokenPrefix)}
	if _, err := inv.CreateFleet(ctx, "seed", store.Fleet{Name: "default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.CreateProfile(ctx, "seed", inventory.DefaultProfile()); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]struct {
		secret string
		role   auth.Role
	}{"admin": {s.admin, auth.RoleAdmin}, "viewer": {s.viewer, auth.RoleViewer}} {
		if _, err := st.CreateAdminToken(ctx, store.AdminToken{Name: name, Hash: secret.Hash(tok.secret), Role: string(tok.role)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fullConfig is every dependency api.New requires, over st and theCA: real
// services where they cost nothing until used, doubles (doubles_test.go)
// for the OCSP responder, the CRL and the UI. The policy service has no
// active version loaded (EnsureActive would store one); the revocation
// service runs no batch jobs (withBatchRevoke does). Options replace parts.
func fullConfig(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, now func() time.Time) api.Config {
	t.Helper()
	inv, err := inventory.New(inventory.Config{Fleets: st, Profiles: st, Devices: st, Certificates: st,
		Roles: theCA.Roles()})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: rec, Issuer: theCA, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	az := authz.New(authz.Config{})
	pol, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: az})
	if err != nil {
		t.Fatal(err)
	}
	syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: az})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: syncer, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	kicks, err := kick.New(kick.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.New(auth.Config{Users: st, Sessions: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(auth.TokensConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	// The charts' series over counters nothing counts yet (withTraffic
	// gives a test its own).
	traffic, err := series.New(series.Config{Source: series.FromGatherer(prometheus.NewRegistry()), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	estSrv, err := est.New(est.Config{Enroll: enr, CA: theCA, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	vendorRegistry, err := vendors.New(vendors.Config{Registry: st, Lists: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return api.Config{Inventory: inv, Enroll: enr, AdminTokens: tokens, Batches: st, Audit: st, CA: theCA,
		Policies: pol, PolicyVersions: st, Decisions: az, Stats: st, Traffic: traffic, Revoke: rev, SessionKicks: st, KickTargets: kicks,
		OCSP: noOCSP{}, CRL: &fakeCRL{}, Auth: users, UI: noUI, Version: "test",
		// As the server binary: every request goes through the metrics.
		Observer: metrics.New(metrics.Config{}), EST: estSrv, Vendors: vendorRegistry}
}

// newCA initializes a fresh CA hierarchy in a temp dir and loads it.
func newCA(t testing.TB, st *store.Store, now func() time.Time) *ca.CA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: caPass}); err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: caPass, Store: st, CRLStore: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reply is one HTTP exchange's outcome.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return strings.TrimSpace(string(r.body)) }

// request is an HTTP request to the stack; zero fields are left out.
type request struct {
	method      string
	path        string
	bearer      string
	contentType string
	body        io.Reader
	chunked     bool              // send without Content-Length
	header      map[string]string // more headers
}

func (s *stack) send(t testing.TB, r request) reply {
	t.Helper()
	req, err := http.NewRequest(r.method, s.srv.URL+r.path, r.body)
	if err != nil {
		t.Fatal(err)
	}
	if r.chunked {
		req.ContentLength = -1
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// call sends in as JSON (nil sends no body), checks the status and decodes
// the reply into out when out is not nil.
func (s *stack) call(t testing.TB, method, path, bearer string, in any, want int, out any) reply {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	r := s.send(t, request{method: method, path: path, bearer: bearer, contentType: "application/json", body: body})
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r)
	}
	if out != nil {
		dec := json.NewDecoder(bytes.NewReader(r.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(out); err != nil {
			t.Fatalf("%s %s: decode %T: %v\n%s", method, path, out, err, r)
		}
	}
	return r
}

// wantError asserts that r is exactly the API's JSON error shape with the
// given status and code.
func wantError(t testing.TB, r reply, status int, code fault.Code) {
	t.Helper()
	if r.status >= 500 {
		t.Errorf("status %d is a server error: %s", r.status, r)
	}
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error *struct {
			Code    *fault.Code `json:"code"`
			Message *string     `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body is not {\"error\":{\"code\",\"message\"}}: %v: %s", err, r)
	}
	if body.Error == nil || body.Error.Code == nil || body.Error.Message == nil {
		t.Fatalf("error body lacks error.code or error.message: %s", r)
	}
	if *body.Error.Code != code {
		t.Errorf("error.code %q, want %q (message %q)", *body.Error.Code, code, *body.Error.Message)
	}
	if *body.Error.Message == "" {
		t.Errorf("error.message is empty")
	}
}

// --- flows -----------------------------------------------------------------

// batch creates a token batch through the API as admin.
func (s *stack) batch(t testing.TB, in map[string]any) apitypes.BatchResponse {
	t.Helper()
	var out apitypes.BatchResponse
	s.call(t, http.MethodPost, "/api/v1/token-batches", s.admin, in, http.StatusCreated, &out)
	return out
}

// token returns one fresh bootstrap token for fleet/profile "default".
func (s *stack) token(t testing.TB) string {
	t.Helper()
	return s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 1, "ttl": "1h"}).Tokens[0].Token
}

// enrollOK enrolls with token and a new P-256 key and checks the reply.
func (s *stack) enrollOK(t testing.TB, token string) (apitypes.EnrollResponse, crypto.Signer, *x509.Certificate) {
	t.Helper()
	key := testpki.Key(t, "P-256")
	var out apitypes.EnrollResponse
	s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: token, CSR: testpki.CSRPEM(t, key)}, http.StatusCreated, &out)
	cert, err := enroll.ParseCertificatePEM([]byte(out.Certificate))
	if err != nil {
		t.Fatalf("enroll reply certificate: %v", err)
	}
	return out, key, cert
}

// challengeCSR asks for a renewal challenge for certPEM and returns a PEM
// CSR signed by key that carries it: the proof a renewal over plain HTTP
// needs.
func (s *stack) challengeCSR(t testing.TB, certPEM string, key crypto.Signer) string {
	t.Helper()
	var ch apitypes.RenewChallengeResponse
	s.call(t, http.MethodPost, "/api/v1/renew/challenge", "", apitypes.RenewChallengeRequest{Certificate: certPEM},
		http.StatusCreated, &ch)
	return nonceCSR(t, key, ch.Nonce)
}

// nonceCSR is a PEM CSR signed by key carrying nonce as its challengePassword.
func nonceCSR(t testing.TB, key crypto.Signer, nonce string) string {
	t.Helper()
	der, err := enroll.NewChallengeCSR(key, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonUnmarshal decodes strictly: a field the test does not know fails it.
func jsonUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func samePub(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// readReply reads and closes a response.
func readReply(resp *http.Response) reply {
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: buf.Bytes()}
}
