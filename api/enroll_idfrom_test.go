package api_test

import (
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// TestEnrollDeviceIDFromCSRSerial: POST /api/v1/enroll obeys a profile's
// device_id_from csr_serial_number as EST does (enroll.Service decides for
// every front end). On both databases.
func TestEnrollDeviceIDFromCSRSerial(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			s.call(t, http.MethodPost, "/api/v1/profiles", s.admin, map[string]any{"name": "serial", "key_types": []string{"P-256"},
				"validity": "1d", "device_id_from": "csr_serial_number"}, http.StatusCreated, nil)
			token := func() string {
				return s.batch(t, map[string]any{"fleet": "default", "profile": "serial", "count": 1, "ttl": "1h"}).Tokens[0].Token
			}
			csr := func(serial string) string {
				der := testpki.CSRSubject(t, testpki.Key(t, "P-256"), pkix.Name{CommonName: "x", SerialNumber: serial})
				return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
			}
			var ok apitypes.EnrollResponse
			s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: token(), CSR: csr("sn-1")}, http.StatusCreated, &ok)
			if ok.DeviceID != "sn-1" {
				t.Fatalf("device %q, want sn-1 from the CSR", ok.DeviceID)
			}
			for _, tc := range []struct {
				name   string
				req    apitypes.EnrollRequest
				status int
				code   fault.Code
			}{
				{"no serialNumber", apitypes.EnrollRequest{Token: token(), CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))}, 400, fault.CSRInvalid},
				{"serialNumber outside the grammar", apitypes.EnrollRequest{Token: token(), CSR: csr("a/b")}, 400, fault.InvalidArgument},
				{"device_id differs", apitypes.EnrollRequest{Token: token(), CSR: csr("sn-2"), DeviceID: "sn-3"}, 400, fault.InvalidArgument},
				{"serialNumber taken", apitypes.EnrollRequest{Token: token(), CSR: csr("sn-1")}, 409, fault.AlreadyExists},
			} {
				t.Run(tc.name, func(t *testing.T) {
					wantError(t, s.call(t, http.MethodPost, "/api/v1/enroll", "", tc.req, tc.status, nil), tc.status, tc.code)
				})
			}
		})
	}
}
