package api_test

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

// apiRecorder is an api.Observer, and an enroll.Observer, that keeps
// what it was told.
type apiRecorder struct {
	mu       sync.Mutex
	served   []string
	enrolled []string
	ocsp     []string
}

var (
	_ api.Observer    = (*apiRecorder)(nil)
	_ enroll.Observer = (*apiRecorder)(nil)
)

func (r *apiRecorder) HTTPServed(route, method string, status int, dur time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.served = append(r.served, fmt.Sprintf("%s %s %d", method, route, status))
}

func (r *apiRecorder) Enrolled(kind, code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enrolled = append(r.enrolled, kind+" "+code)
}

func (r *apiRecorder) OCSPAnswered(outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ocsp = append(r.ocsp, outcome)
}

// take returns what was reported since the last take.
func (r *apiRecorder) take() (served, enrolled, ocsp []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	served, enrolled, ocsp = r.served, r.enrolled, r.ocsp
	r.served, r.enrolled, r.ocsp = nil, nil, nil
	return served, enrolled, ocsp
}

func withObserver(o api.Observer) stackOpt { return func(c *stackCfg) { c.api.Observer = o } }

// withEnrollObserver gives the stack an enrollment service (behind the API
// and EST alike) that reports to o, as the server binary's reports to its
// metrics.
func withEnrollObserver(o enroll.Observer) stackOpt {
	return func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: rec, Issuer: theCA, Observer: o})
			if err != nil {
				t.Fatal(err)
			}
			estSrv, err := est.New(est.Config{Enroll: enr, CA: theCA, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Enroll, cfg.EST = enr, estSrv
		}
	}
}

// TestObserverRoutes: each request is reported once, by the route pattern
// the router matched, never the raw path; what no route took is
// "unmatched"; the status is the one sent, errors included.
func TestObserverRoutes(t *testing.T) {
	rec := &apiRecorder{}
	s := newStack(t, testdb.SQLite(t), withObserver(rec))
	rec.take() // the seeding
	cases := []struct {
		method, path, bearer string
		want                 string
	}{
		{"GET", "/api/v1/version", "", "GET /api/v1/version 200"},
		{"GET", "/api/v1/devices/dev-secret-42", s.admin, "GET /api/v1/devices/:id 404"},
		{"GET", "/api/v1/devices", "", "GET /api/v1/devices 401"},
		{"GET", "/api/v1/no/such/dev-secret-42", "", "GET unmatched 404"},
		{"DELETE", "/api/v1/version", "", "DELETE unmatched 405"},
		{"GET", "/some/page/dev-secret-42", "", "GET unmatched 404"},
		{"GET", "/crl", "", "GET /crl 404"}, // the test stack has no list yet
		{"POST", "/ocsp", "", "POST /ocsp 200"},
		{"GET", "/ocsp/MAMCAQA%3D", "", "GET /ocsp/* 200"},
		{"BREW", "/api/v1/version", "", "BREW unmatched 405"},
	}
	for _, c := range cases {
		r := s.send(t, request{method: c.method, path: c.path, bearer: c.bearer})
		served, _, _ := rec.take()
		if !slices.Equal(served, []string{c.want}) {
			t.Errorf("%s %s (HTTP %d): observed %q, want [%s]", c.method, c.path, r.status, served, c.want)
		}
		for _, line := range served {
			if strings.Contains(line, "dev-secret-42") {
				t.Errorf("a raw path reached the observer: %q", line)
			}
		}
	}
}

// TestObserverEnrollments: every enrollment and renewal the service runs
// is counted once, by the service, whether the API or EST asked, with its
// code (an EST retry that got its certificate again is a repeat, although
// EST answers 200 either way); a request refused before it reaches the
// service (a body that does not decode or is too large, EST without its
// credentials) is an HTTP request only, and so is a GET of an enrollment
// route.
func TestObserverEnrollments(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			rec := &apiRecorder{}
			s := newStack(t, testdb.DSN(t, backend), withTLS(), withObserver(rec), withEnrollObserver(rec))
			tok, estTok := s.token(t), s.token(t)
			key := testpki.Key(t, "P-256")
			csr := testpki.CSRPEM(t, key)
			block, _ := pem.Decode([]byte(csr))
			estBody := base64.StdEncoding.EncodeToString(block.Bytes)
			rec.take()
			apiEnroll := func(body string) int {
				return s.send(t, request{method: "POST", path: "/api/v1/enroll", contentType: "application/json",
					body: strings.NewReader(body)}).status
			}
			estEnroll := func(path, token string) int {
				r := request{method: "POST", path: path, contentType: "application/pkcs10", body: strings.NewReader(estBody),
					header: map[string]string{"Content-Transfer-Encoding": "base64"}}
				if token != "" {
					r.header["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+token))
				}
				return s.send(t, r).status
			}
			body := string(mustJSON(t, apitypes.EnrollRequest{Token: tok, CSR: csr}))
			other := string(mustJSON(t, apitypes.EnrollRequest{Token: tok, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}))
			statuses := []int{
				apiEnroll(body),  // ok
				apiEnroll(body),  // the same request again: repeated
				apiEnroll(other), // the token with another key: token_used
				apiEnroll(`{"token":`),
				apiEnroll(`{"token":"` + strings.Repeat("x", 70<<10) + `"}`),
				estEnroll("/.well-known/est/simpleenroll", estTok),                             // ok
				estEnroll("/.well-known/est/simpleenroll", estTok),                             // the same again: repeated
				estEnroll("/.well-known/est/simpleenroll", ""),                                 // no credentials: never reaches the service
				estEnroll("/.well-known/est/simpleenroll", "ghb_unknown"),                      // not a token at all: refused before the service
				estEnroll("/.well-known/est/simpleenroll", secret.New(enroll.BootstrapPrefix)), // a token no batch holds
			}
			if want := []int{201, 200, 409, 400, 413, 200, 200, 401, 401, 401}; !slices.Equal(statuses, want) {
				t.Fatalf("statuses %v, want %v", statuses, want)
			}
			s.send(t, request{method: "POST", path: "/api/v1/renew", contentType: "application/json", body: strings.NewReader(`{}`)})
			s.send(t, request{method: "GET", path: "/api/v1/enroll"}) // no such route for GET: not an enrollment
			served, enrolled, _ := rec.take()
			want := []string{"enroll ok", "enroll repeated", "enroll token_used", "enroll ok", "enroll repeated",
				"enroll token_invalid", "renew unauthenticated"}
			if !slices.Equal(enrolled, want) {
				t.Fatalf("enrollments %q, want %q", enrolled, want)
			}
			if len(served) != len(statuses)+2 {
				t.Fatalf("%d requests sent, %d observed: %q", len(statuses)+2, len(served), served)
			}
		})
	}
}

// TestObserverOCSP: each OCSP answer is reported by its outcome, POST and
// GET alike (the test stack's responder answers for no certificate).
func TestObserverOCSP(t *testing.T) {
	rec := &apiRecorder{}
	s := newStack(t, testdb.SQLite(t), withObserver(rec))
	rec.take()
	s.send(t, request{method: "POST", path: "/ocsp", body: strings.NewReader("not DER")})
	s.send(t, request{method: "GET", path: "/ocsp/MAMCAQA%3D"})
	if _, _, got := rec.take(); !slices.Equal(got, []string{"malformed", "malformed"}) {
		t.Fatalf("OCSP outcomes %q", got)
	}
}
