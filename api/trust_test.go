package api_test

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

// eagerDevice enrolls a device under a profile whose renewal window is open
// at once, and returns its enrollment request's CSR with the reply and key.
func eagerDevice(t testing.TB, s *stack) (csrPEM string, out apitypes.EnrollResponse, key crypto.Signer) {
	t.Helper()
	r := s.send(t, request{method: http.MethodGet, path: "/api/v1/profiles/eager", bearer: s.viewer})
	if r.status == http.StatusNotFound {
		s.call(t, http.MethodPost, "/api/v1/profiles", s.admin, map[string]any{"name": "eager",
			"key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
	}
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 1, "ttl": "1h"})
	key = testpki.Key(t, "P-256")
	csrPEM = testpki.CSRPEM(t, key)
	s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: b.Tokens[0].Token, CSR: csrPEM},
		http.StatusCreated, &out)
	return csrPEM, out, key
}

func (s *stack) renewRaw(t testing.TB, certPEM, csrPEM string) reply {
	t.Helper()
	return s.send(t, request{method: http.MethodPost, path: "/api/v1/renew", contentType: "application/json",
		body: bytes.NewReader(mustJSON(t, apitypes.RenewRequest{Certificate: certPEM, CSR: csrPEM}))})
}

func (s *stack) challenge(t testing.TB, certPEM string) apitypes.RenewChallengeResponse {
	t.Helper()
	var ch apitypes.RenewChallengeResponse
	s.call(t, http.MethodPost, "/api/v1/renew/challenge", "", apitypes.RenewChallengeRequest{Certificate: certPEM},
		http.StatusCreated, &ch)
	return ch
}

// TestRenewReplay (issue 9, item 4): without mutual TLS a renewal proves
// possession of the key with a fresh, single-use server challenge signed
// into the CSR. The enrollment CSR, a used renewal CSR, a challenge of
// another certificate, an expired or unknown challenge all get 4xx; on
// main the first two renewed.
func TestRenewReplay(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			enrollCSR, first, key := eagerDevice(t, s)

			// The enrollment CSR, replayed with the enrollment certificate.
			wantError(t, s.renewRaw(t, first.Certificate, enrollCSR), http.StatusUnauthorized, fault.ChallengeRequired)

			// A proper renewal, and the same request again.
			csr1 := s.challengeCSR(t, first.Certificate, key)
			r := s.renewRaw(t, first.Certificate, csr1)
			if r.status != http.StatusCreated {
				t.Fatalf("renewal with a challenge: %s", r)
			}
			var second apitypes.EnrollResponse
			if err := jsonUnmarshal(r.body, &second); err != nil {
				t.Fatal(err)
			}
			wantError(t, s.renewRaw(t, first.Certificate, csr1), http.StatusUnauthorized, fault.CertInvalid)
			// The used renewal CSR with the new certificate (same key): the
			// replay that main accepted.
			wantError(t, s.renewRaw(t, second.Certificate, csr1), http.StatusUnauthorized, fault.ChallengeInvalid)
			// And the enrollment CSR with the new certificate.
			wantError(t, s.renewRaw(t, second.Certificate, enrollCSR), http.StatusUnauthorized, fault.ChallengeRequired)

			// A challenge is bound to the certificate it was issued for.
			early := s.challenge(t, second.Certificate)
			r = s.renewRaw(t, second.Certificate, s.challengeCSR(t, second.Certificate, key))
			if r.status != http.StatusCreated {
				t.Fatalf("second renewal: %s", r)
			}
			var third apitypes.EnrollResponse
			if err := jsonUnmarshal(r.body, &third); err != nil {
				t.Fatal(err)
			}
			wantError(t, s.renewRaw(t, third.Certificate, nonceCSR(t, key, early.Nonce)), http.StatusUnauthorized,
				fault.ChallengeInvalid)

			// Unknown and expired challenges.
			wantError(t, s.renewRaw(t, third.Certificate, nonceCSR(t, key, secret.New(enroll.ChallengePrefix))),
				http.StatusUnauthorized, fault.ChallengeInvalid)
			ch := s.challenge(t, third.Certificate)
			if d := time.Until(ch.ExpiresAt); d < 4*time.Minute || d > 5*time.Minute+time.Second {
				t.Errorf("challenge expires in %v, want 5m", d)
			}
			s.clock.Advance(5*time.Minute + time.Second)
			wantError(t, s.renewRaw(t, third.Certificate, nonceCSR(t, key, ch.Nonce)), http.StatusUnauthorized,
				fault.ChallengeExpired)
			s.clock.Advance(-5*time.Minute - time.Second)

			// No challenge for a superseded, unknown or missing certificate.
			for name, body := range map[string]apitypes.RenewChallengeRequest{
				"superseded": {Certificate: second.Certificate}, "none": {}, "not PEM": {Certificate: "MIIB"}} {
				r := s.send(t, request{method: http.MethodPost, path: "/api/v1/renew/challenge", contentType: "application/json",
					body: bytes.NewReader(mustJSON(t, body))})
				if r.status != http.StatusUnauthorized {
					t.Errorf("challenge for %s certificate: %s", name, r)
				}
			}
		})
	}
}

// TestRenewChallengeFlood: a certificate is public, so anyone may ask for
// its challenges. Asking must not take the device's challenge away: before,
// the store kept 8 per certificate and dropped the oldest, so 8 requests
// from someone who had only seen the certificate, between the device's
// challenge and its renewal, refused every plain-http renewal of it. Every
// asker gets the live challenge (a nonce is no secret: it is worthless
// without the key); a new one is drawn only when less than half its
// lifetime is left, and the older one stays redeemable until it expires.
func TestRenewChallengeFlood(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			_, first, key := eagerDevice(t, s)
			mine := s.challenge(t, first.Certificate)

			// Concurrent askers, after the device asked: all get its challenge.
			for i, got := range askAtOnce(t, s, first.Certificate, 40) {
				if got != mine.Nonce {
					t.Fatalf("asker %d got another challenge than the device's live one", i)
				}
			}

			// Past half its lifetime, one new challenge, however many ask at
			// once (issuing is serialised per certificate); the device's
			// older one still works.
			s.clock.Advance(3 * time.Minute)
			fresh := askAtOnce(t, s, first.Certificate, 40)
			for i, got := range fresh {
				if got == mine.Nonce || got != fresh[0] {
					t.Fatalf("after 3 of 5 minutes, concurrent asker %d got the old or a second new challenge", i)
				}
			}
			for range 80 {
				s.challenge(t, first.Certificate)
			}
			r := s.renewRaw(t, first.Certificate, nonceCSR(t, key, mine.Nonce))
			s.clock.Advance(-3 * time.Minute)
			if r.status != http.StatusCreated {
				t.Fatalf("the device's renewal after a flood of challenge requests: %s", r)
			}
		})
	}
}

// askAtOnce asks for certPEM's renewal challenge n times at once and
// returns the nonces.
func askAtOnce(t *testing.T, s *stack, certPEM string, n int) []string {
	t.Helper()
	body := mustJSON(t, apitypes.RenewChallengeRequest{Certificate: certPEM})
	nonces := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.srv.Client().Post(s.srv.URL+"/api/v1/renew/challenge", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			r := readReply(resp)
			var ch apitypes.RenewChallengeResponse
			if r.status != http.StatusCreated || json.Unmarshal(r.body, &ch) != nil {
				t.Errorf("challenge: %s", r)
				return
			}
			nonces[i] = ch.Nonce
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return nonces
}

// TestRenewChallengeRace: one challenge, many concurrent renewals with it:
// exactly one renews.
func TestRenewChallengeRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			_, first, key := eagerDevice(t, s)
			body := mustJSON(t, apitypes.RenewRequest{Certificate: first.Certificate, CSR: s.challengeCSR(t, first.Certificate, key)})
			const n = 30
			tally := parallelPosts(t, s, "/api/v1/renew", n, func(int) []byte { return body })
			if tally["201 "] != 1 || tally["201 "]+tally["401 challenge_invalid"]+tally["401 certificate_invalid"] != n {
				t.Fatalf("outcomes %v, want one 201 and the rest 401 challenge_invalid or certificate_invalid", tally)
			}
		})
	}
}

type outcome struct {
	status int
	code   fault.Code
	serial string
}

// parallelPosts sends n JSON POSTs at once and tallies "status code".
func parallelPosts(t testing.TB, s *stack, path string, n int, body func(i int) []byte) map[string]int {
	t.Helper()
	out := parallelOutcomes(t, s, path, n, body)
	tally := map[string]int{}
	for _, o := range out {
		tally[fmt.Sprintf("%d %s", o.status, o.code)]++
	}
	return tally
}

func parallelOutcomes(t testing.TB, s *stack, path string, n int, body func(i int) []byte) []outcome {
	t.Helper()
	out := make([]outcome, n)
	errs := make([]error, n)
	// Bodies (CSRs: key generation and signing) are built before the start,
	// so the requests really arrive together.
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = body(i)
	}
	testrace.Run(n, func(i int) {
		resp, err := s.srv.Client().Post(s.srv.URL+path, "application/json", bytes.NewReader(bodies[i]))
		if err != nil {
			errs[i] = err
			return
		}
		r := readReply(resp)
		// An error or a certificate: one decode reads either.
		var e struct {
			apitypes.ErrorBody
			apitypes.EnrollResponse
		}
		_ = json.Unmarshal(r.body, &e)
		out[i] = outcome{status: r.status, code: e.Error.Code, serial: e.Serial}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestEnrollRetry (issue 9, item 8): a factory line that lost the reply
// retries with the same token and key and gets the same certificate (200);
// another key, an expired token, a superseded certificate or a device no
// longer active get token_used. On main every retry was token_used.
func TestEnrollRetry(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 3, "ttl": "1h"})
			key := testpki.Key(t, "P-256")
			req := apitypes.EnrollRequest{Token: b.Tokens[0].Token, CSR: testpki.CSRPEM(t, key)}
			var first, again apitypes.EnrollResponse
			s.call(t, http.MethodPost, "/api/v1/enroll", "", req, http.StatusCreated, &first)
			s.call(t, http.MethodPost, "/api/v1/enroll", "", req, http.StatusOK, &again)
			if again != first {
				t.Fatalf("retry got %+v, want %+v", again, first)
			}
			// A new CSR for the same key is the same retry.
			s.call(t, http.MethodPost, "/api/v1/enroll", "",
				apitypes.EnrollRequest{Token: req.Token, CSR: testpki.CSRPEM(t, key), DeviceID: first.DeviceID}, http.StatusOK, &again)
			if again.Serial != first.Serial {
				t.Fatalf("retry with a new CSR got serial %s, want %s", again.Serial, first.Serial)
			}
			refused := func(name string, r apitypes.EnrollRequest) {
				t.Helper()
				wantError(t, s.call(t, http.MethodPost, "/api/v1/enroll", "", r, http.StatusConflict, nil), http.StatusConflict, fault.TokenUsed)
			}
			refused("another key", apitypes.EnrollRequest{Token: req.Token, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
			refused("another device id", apitypes.EnrollRequest{Token: req.Token, CSR: req.CSR, DeviceID: "someone-else"})
			s.clock.Advance(time.Hour)
			refused("after the token's TTL", req)
			s.clock.Advance(-time.Hour)

			var devs apitypes.DeviceList
			s.call(t, http.MethodGet, "/api/v1/devices", s.viewer, nil, http.StatusOK, &devs)
			if len(devs.Devices) != 1 {
				t.Fatalf("%d devices after retries, want 1", len(devs.Devices))
			}

			// Once the certificate is superseded, the token is spent for good.
			s.call(t, http.MethodPost, "/api/v1/profiles", s.admin, map[string]any{"name": "eager",
				"key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
			eb := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 1, "ttl": "1h"})
			ereq := apitypes.EnrollRequest{Token: eb.Tokens[0].Token, CSR: testpki.CSRPEM(t, key)}
			var e1 apitypes.EnrollResponse
			s.call(t, http.MethodPost, "/api/v1/enroll", "", ereq, http.StatusCreated, &e1)
			if r := s.renewRaw(t, e1.Certificate, s.challengeCSR(t, e1.Certificate, key)); r.status != http.StatusCreated {
				t.Fatalf("renew: %s", r)
			}
			refused("certificate superseded", ereq)

			// And once the device is no longer active.
			req2 := apitypes.EnrollRequest{Token: b.Tokens[1].Token, CSR: testpki.CSRPEM(t, key)}
			var d2 apitypes.EnrollResponse
			s.call(t, http.MethodPost, "/api/v1/enroll", "", req2, http.StatusCreated, &d2)
			dev, err := s.st.GetDevice(t.Context(), d2.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			dev.Status = store.DeviceSuspended
			if _, err := s.st.UpdateDevice(t.Context(), dev, nil); err != nil {
				t.Fatal(err)
			}
			refused("device suspended", req2)
		})
	}
}

// TestEnrollRetryRace: many concurrent enrollments with one token and one
// key all get the same certificate (one 201, the rest 200); with another
// token and a key each, exactly one wins (TestEnrollRace).
func TestEnrollRetryRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			tok := s.token(t)
			key := testpki.Key(t, "P-256")
			const n = 40
			bodies := make([][]byte, n)
			for i := range bodies {
				bodies[i] = mustJSON(t, apitypes.EnrollRequest{Token: tok, CSR: testpki.CSRPEM(t, key)})
			}
			out := parallelOutcomes(t, s, "/api/v1/enroll", n, func(i int) []byte { return bodies[i] })
			created, serials := 0, map[string]bool{}
			for _, o := range out {
				switch o.status {
				case http.StatusCreated:
					created++
				case http.StatusOK:
				default:
					t.Fatalf("outcome %+v, want 200 or 201", o)
				}
				serials[o.serial] = true
			}
			if created != 1 || len(serials) != 1 {
				t.Fatalf("%d created, serials %v: want one 201 and one certificate for all", created, serials)
			}
		})
	}
}

// TestDeviceIDReservation (issue 9, item 5): an id fixed to an unused token
// is reserved for it: a free token (of any fleet or batch) cannot take it,
// and the rightful token still enrolls afterwards. A batch cannot fix an id
// that is enrolled or fixed to another live token. On main the squatter
// enrolled and the rightful token got already_exists.
func TestDeviceIDReservation(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			s.call(t, http.MethodPost, "/api/v1/fleets", s.admin, map[string]any{"name": "fleet-b"}, http.StatusCreated, nil)
			rightful := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "device_ids": []string{"sensor-777", "sensor-778"}, "ttl": "1h"})
			free := s.batch(t, map[string]any{"fleet": "fleet-b", "profile": "default", "count": 3, "ttl": "1h"})
			sameFleet := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 1, "ttl": "1h"})

			enrollAs := func(token, id string) reply {
				return s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json",
					body: bytes.NewReader(mustJSON(t, apitypes.EnrollRequest{Token: token, DeviceID: id,
						CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}))})
			}
			wantError(t, enrollAs(free.Tokens[0].Token, "sensor-777"), http.StatusConflict, fault.DeviceIDReserved)
			wantError(t, enrollAs(sameFleet.Tokens[0].Token, "sensor-777"), http.StatusConflict, fault.DeviceIDReserved)
			// The refusal spent nothing: the free token enrolls another id.
			if r := enrollAs(free.Tokens[0].Token, "sensor-900"); r.status != http.StatusCreated {
				t.Fatalf("free token, free id: %s", r)
			}
			if r := enrollAs(rightful.Tokens[0].Token, ""); r.status != http.StatusCreated || !strings.Contains(r.String(), `"sensor-777"`) {
				t.Fatalf("rightful token after the squat attempt: %s", r)
			}

			// Batches: an enrolled id, an id fixed to a live token, are refused.
			for name, ids := range map[string][]string{"enrolled": {"new-1", "sensor-777"}, "fixed elsewhere": {"sensor-778"},
				"enrolled by a free token": {"sensor-900"}} {
				r := s.call(t, http.MethodPost, "/api/v1/token-batches", s.admin, map[string]any{"fleet": "fleet-b",
					"profile": "default", "device_ids": ids, "ttl": "1h"}, http.StatusConflict, nil)
				wantError(t, r, http.StatusConflict, fault.DeviceIDReserved)
				_ = name
			}
			var batches apitypes.TokenBatchList
			s.call(t, http.MethodGet, "/api/v1/token-batches", s.viewer, nil, http.StatusOK, &batches)
			if len(batches.TokenBatches) != 3 {
				t.Fatalf("%d batches, want the 3 created before the refusals", len(batches.TokenBatches))
			}

			// A reservation ends with its token's TTL.
			s.clock.Advance(time.Hour)
			late := s.batch(t, map[string]any{"fleet": "fleet-b", "profile": "default", "count": 1, "ttl": "1h"})
			if r := enrollAs(late.Tokens[0].Token, "sensor-778"); r.status != http.StatusCreated {
				t.Fatalf("expired reservation still held: %s", r)
			}
		})
	}
}

// TestDeviceIDReservationRace: the rightful token against many squatters at
// once always wins; a batch fixing an id against an enrollment choosing it
// never both succeed.
func TestDeviceIDReservationRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			const rounds, squatters = 10, 12
			for round := range rounds {
				id := fmt.Sprintf("contested-%d", round)
				rightful := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "device_ids": []string{id}, "ttl": "1h"})
				free := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": squatters, "ttl": "1h"})
				out := parallelOutcomes(t, s, "/api/v1/enroll", squatters+1, func(i int) []byte {
					if i == squatters {
						return mustJSON(t, apitypes.EnrollRequest{Token: rightful.Tokens[0].Token, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
					}
					return mustJSON(t, apitypes.EnrollRequest{Token: free.Tokens[i].Token, DeviceID: id, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
				})
				if out[squatters].status != http.StatusCreated {
					t.Fatalf("round %d: rightful token got %+v", round, out[squatters])
				}
				for _, o := range out[:squatters] {
					if o.status != http.StatusConflict || (o.code != fault.DeviceIDReserved && o.code != fault.AlreadyExists) {
						t.Fatalf("round %d: squatter got %+v", round, o)
					}
				}
			}

			// Batch fixing X vs a free token enrolling X, at once.
			both := 0
			for round := range rounds {
				id := fmt.Sprintf("raced-%d", round)
				tok := s.token(t)
				var wg sync.WaitGroup
				var batchStatus, enrollStatus int
				batchReq := mustRequest(t, s, "/api/v1/token-batches", s.admin, map[string]any{
					"fleet": "default", "profile": "default", "device_ids": []string{id}, "ttl": "1h"})
				enrollReq := mustRequest(t, s, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: tok,
					DeviceID: id, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
				start := make(chan struct{})
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					resp, err := s.srv.Client().Do(batchReq)
					if err == nil {
						batchStatus = readReply(resp).status
					}
				}()
				go func() {
					defer wg.Done()
					<-start
					resp, err := s.srv.Client().Do(enrollReq)
					if err == nil {
						enrollStatus = readReply(resp).status
					}
				}()
				close(start)
				wg.Wait()
				if batchStatus == http.StatusCreated && enrollStatus == http.StatusCreated {
					both++
				}
				if batchStatus != http.StatusCreated && enrollStatus != http.StatusCreated {
					t.Fatalf("round %d: neither succeeded (batch %d, enroll %d)", round, batchStatus, enrollStatus)
				}
			}
			if both != 0 {
				t.Fatalf("%d of %d rounds both fixed an id in a batch and enrolled it with a free token", both, rounds)
			}
		})
	}
}

// TestDeviceIDReservationRegister: pre-registering a device is the other
// way to take an id. A batch refuses ids pending in another fleet (they
// could never be claimed); registering an id fixed to another fleet's
// unused token must be refused the same way, or the rightful token gets
// already_exists. Registering it in the token's own fleet is the intended
// flow (the token claims it). Both at once never both succeed.
func TestDeviceIDReservationRegister(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			s.call(t, http.MethodPost, "/api/v1/fleets", s.admin, map[string]any{"name": "fleet-b"}, http.StatusCreated, nil)
			rightful := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "device_ids": []string{"sensor-777", "sensor-778"}, "ttl": "1h"})
			register := func(id, fleet string, want int) reply {
				return s.call(t, http.MethodPost, "/api/v1/devices", s.admin, map[string]any{"id": id, "fleet": fleet,
					"profile": "default"}, want, nil)
			}
			wantError(t, register("sensor-777", "fleet-b", http.StatusConflict), http.StatusConflict, fault.DeviceIDReserved)
			register("sensor-778", "default", http.StatusCreated)
			for i, want := range []string{`"sensor-777"`, `"sensor-778"`} {
				r := s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json",
					body: bytes.NewReader(mustJSON(t, apitypes.EnrollRequest{Token: rightful.Tokens[i].Token,
						CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}))})
				if r.status != http.StatusCreated || !strings.Contains(r.String(), want) {
					t.Fatalf("rightful token %d: %s", i, r)
				}
			}

			both := 0
			const rounds = 12
			for round := range rounds {
				id := fmt.Sprintf("raced-reg-%d", round)
				var wg sync.WaitGroup
				var batchStatus, regStatus int
				batchReq := mustRequest(t, s, "/api/v1/token-batches", s.admin, map[string]any{
					"fleet": "default", "profile": "default", "device_ids": []string{id}, "ttl": "1h"})
				regReq := mustRequest(t, s, "/api/v1/devices", s.admin, map[string]any{
					"id": id, "fleet": "fleet-b", "profile": "default"})
				start := make(chan struct{})
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					resp, err := s.srv.Client().Do(batchReq)
					if err == nil {
						batchStatus = readReply(resp).status
					}
				}()
				go func() {
					defer wg.Done()
					<-start
					resp, err := s.srv.Client().Do(regReq)
					if err == nil {
						regStatus = readReply(resp).status
					}
				}()
				close(start)
				wg.Wait()
				if batchStatus == http.StatusCreated && regStatus == http.StatusCreated {
					both++
				}
				if batchStatus != http.StatusCreated && regStatus != http.StatusCreated {
					t.Fatalf("round %d: neither succeeded (batch %d, register %d)", round, batchStatus, regStatus)
				}
			}
			if both != 0 {
				t.Fatalf("%d of %d rounds both fixed an id to a token and registered it in another fleet", both, rounds)
			}
		})
	}
}

func mustRequest(t testing.TB, s *stack, path, bearer string, body any) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+path, bytes.NewReader(mustJSON(t, body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req
}

// TestDeviceIDGrammarAPI: every way an id enters the API applies one
// grammar, with a 400 invalid_argument that states it.
func TestDeviceIDGrammarAPI(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	tok := s.token(t)
	for _, id := range []string{".", "..", "a..b", ".hidden", "-x", "a/b", "a b", strings.Repeat("x", 65)} {
		t.Run(id, func(t *testing.T) {
			for name, r := range map[string]reply{
				"enroll": s.send(t, request{method: http.MethodPost, path: "/api/v1/enroll", contentType: "application/json",
					body: bytes.NewReader(mustJSON(t, apitypes.EnrollRequest{Token: tok, DeviceID: id, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}))}),
				"register": s.call(t, http.MethodPost, "/api/v1/devices", s.admin, map[string]any{"id": id, "fleet": "default",
					"profile": "default"}, http.StatusBadRequest, nil),
				"batch": s.call(t, http.MethodPost, "/api/v1/token-batches", s.admin, map[string]any{"fleet": "default",
					"profile": "default", "device_ids": []string{id}, "ttl": "1h"}, http.StatusBadRequest, nil),
			} {
				wantError(t, r, http.StatusBadRequest, fault.InvalidArgument)
				if !strings.Contains(r.String(), "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}") {
					t.Errorf("%s: message does not state the grammar: %s", name, r)
				}
			}
		})
	}
	// Path parameters: what no device can be called is 400, not a lookup.
	for _, p := range []string{"a%00b", "a%2Fb", "%ff", "a%20b", strings.Repeat("x", 65)} {
		r := s.send(t, request{method: http.MethodGet, path: "/api/v1/devices/" + p, bearer: s.viewer})
		wantError(t, r, http.StatusBadRequest, fault.InvalidArgument)
		r = s.send(t, request{method: http.MethodGet, path: "/api/v1/devices/" + p + "/certificates", bearer: s.viewer})
		wantError(t, r, http.StatusBadRequest, fault.InvalidArgument)
	}
	// Authentication comes before the grammar (text that is not text at
	// all — NUL, invalid UTF-8 — is refused at the edge, before anything);
	// a valid unknown id is still 404.
	wantError(t, s.send(t, request{method: http.MethodGet, path: "/api/v1/devices/a%20b"}), http.StatusUnauthorized, fault.Unauthenticated)
	wantError(t, s.send(t, request{method: http.MethodGet, path: "/api/v1/devices/a%00b"}), http.StatusBadRequest, fault.InvalidArgument)
	wantError(t, s.send(t, request{method: http.MethodGet, path: "/api/v1/devices/mac:00:11", bearer: s.viewer}), http.StatusNotFound, fault.NotFound)
	// The token was never spent by the refusals.
	var out apitypes.EnrollResponse
	s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: tok, DeviceID: "mac:00:11",
		CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}, http.StatusCreated, &out)
	s.call(t, http.MethodGet, "/api/v1/devices/mac:00:11", s.viewer, nil, http.StatusOK, nil)
}
