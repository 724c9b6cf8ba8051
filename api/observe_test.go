package api_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// apiRecorder is an api.Observer that keeps what it was told.
type apiRecorder struct {
	mu       sync.Mutex
	served   []string
	enrolled []string
	ocsp     []string
}

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

// TestObserverEnrollments: every enrollment answer is counted with its
// code, including failures from middleware before the handler.
func TestObserverEnrollments(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			rec := &apiRecorder{}
			s := newStack(t, testdb.DSN(t, backend), withObserver(rec))
			tok := s.token(t)
			csr := testpki.CSRPEM(t, testpki.Key(t, "P-256"))
			rec.take()
			enroll := func(body string) int {
				return s.send(t, request{method: "POST", path: "/api/v1/enroll", contentType: "application/json",
					body: strings.NewReader(body)}).status
			}
			body := string(mustJSON(t, apitypes.EnrollRequest{Token: tok, CSR: csr}))
			other := string(mustJSON(t, apitypes.EnrollRequest{Token: tok, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}))
			statuses := []int{
				enroll(body),  // ok
				enroll(body),  // the same request again: repeated
				enroll(other), // the token with another key: token_used
				enroll(`{"token":`),
				enroll(`{"token":"` + strings.Repeat("x", 70<<10) + `"}`),
			}
			if !slices.Equal(statuses, []int{201, 200, 409, 400, 413}) {
				t.Fatalf("statuses %v", statuses)
			}
			s.send(t, request{method: "POST", path: "/api/v1/renew", contentType: "application/json", body: strings.NewReader(`{}`)})
			s.send(t, request{method: "GET", path: "/api/v1/enroll"}) // no such route for GET: not an enrollment
			// EST's enrollments count too, with and without a label (this
			// stack is plain HTTP, which EST refuses).
			s.send(t, request{method: "POST", path: "/.well-known/est/simpleenroll", contentType: "application/pkcs10", body: strings.NewReader("x")})
			s.send(t, request{method: "POST", path: "/.well-known/est/p1/simplereenroll", contentType: "application/pkcs10", body: strings.NewReader("x")})
			_, enrolled, _ := rec.take()
			want := []string{"enroll ok", "enroll repeated", "enroll token_used", "enroll invalid_argument", "enroll body_too_large",
				"renew unauthenticated", "enroll tls_required", "renew tls_required"}
			if !slices.Equal(enrolled, want) {
				t.Fatalf("enrollments %q, want %q", enrolled, want)
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
