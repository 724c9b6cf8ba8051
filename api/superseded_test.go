package api_test

import (
	"net/http"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/revoke"
)

// TestSupersededRevokedAfterGrace: the certificate a renewal replaced is
// revoked with reason superseded (4): at once with superseded_grace 0,
// otherwise by the sweeper once the grace has passed, not before. Revoked,
// OCSP says revoked/superseded and the serial is on the CRL; the renewed
// certificate stays good.
func TestSupersededRevokedAfterGrace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newRevocationStack(t, testdb.DSN(t, backend))
			sweeper, err := revoke.NewSweeper(revoke.SweeperConfig{Store: s.st, CRL: s.crl, Now: s.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			sweep := func() int {
				t.Helper()
				n, err := sweeper.Sweep(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			renewOn := func(profile string) (old, renewed string) {
				t.Helper()
				b := s.batch(t, map[string]any{"fleet": "default", "profile": profile, "count": 1, "ttl": "1h"})
				enr, key, _ := s.enrollOK(t, b.Tokens[0].Token)
				var out apitypes.EnrollResponse
				s.call(t, http.MethodPost, "/api/v1/renew", "", apitypes.RenewRequest{Certificate: enr.Certificate, CSR: s.challengeCSR(t, enr.Certificate, key)},
					http.StatusCreated, &out)
				return enr.Serial, out.Serial
			}
			wantRevokedSuperseded := func(serial string) {
				t.Helper()
				if r := s.ocspStatus(t, serial); r.Status != xocsp.Revoked || r.RevocationReason != xocsp.Superseded {
					t.Errorf("OCSP %s: status %d reason %d, want revoked/superseded", serial, r.Status, r.RevocationReason)
				}
				e, ok := s.crlSerials(t)[serial]
				if !ok || e.ReasonCode != xocsp.Superseded {
					t.Errorf("CRL entry of %s: %v (on the list: %v), want reason superseded", serial, e.ReasonCode, ok)
				}
			}
			wantGood := func(serial string) {
				t.Helper()
				if r := s.ocspStatus(t, serial); r.Status != xocsp.Good {
					t.Errorf("OCSP %s: status %d, want good", serial, r.Status)
				}
				if _, ok := s.crlSerials(t)[serial]; ok {
					t.Errorf("%s is on the CRL", serial)
				}
			}

			s.call(t, http.MethodPost, "/api/v1/profiles", s.admin, map[string]any{"name": "at-once", "key_types": []string{"P-256"},
				"validity": "1h", "renew_window": "1h", "superseded_grace": "0"}, http.StatusCreated, nil)
			s.call(t, http.MethodPost, "/api/v1/profiles", s.admin, map[string]any{"name": "graceful", "key_types": []string{"P-256"},
				"validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)

			// Grace 0: revoked by the renewal itself, CRL republished
			// before the renewal answered.
			old, renewed := renewOn("at-once")
			wantRevokedSuperseded(old)
			wantGood(renewed)

			// Default grace (1h): good until it passes.
			old, renewed = renewOn("graceful")
			wantGood(old)
			if n := sweep(); n != 0 {
				t.Fatalf("sweep right after the renewal revoked %d", n)
			}
			s.clock.Advance(59 * time.Minute)
			if n := sweep(); n != 0 {
				t.Fatalf("sweep within the grace revoked %d", n)
			}
			wantGood(old)
			s.clock.Advance(2 * time.Minute)
			if n := sweep(); n != 1 {
				t.Fatalf("sweep after the grace revoked %d, want 1", n)
			}
			wantRevokedSuperseded(old)
			wantGood(renewed)
			if n := sweep(); n != 0 {
				t.Fatalf("a second sweep revoked %d", n)
			}
			var events apitypes.AuditEventList
			s.call(t, http.MethodGet, "/api/v1/audit?object_type=certificate&object_id="+old, s.viewer, nil, http.StatusOK, &events)
			if len(events.Events) != 1 || events.Events[0].Action != "certificate.revoke" || events.Events[0].Actor != "system:superseded-grace" {
				t.Errorf("audit of the swept certificate: %+v", events.Events)
			}
		})
	}
}
