package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestDiscardedCertificates: a certificate signed for an enrollment or
// renewal that did not commit is listed with its device's, revoked with
// reason cessationOfOperation and marked discarded; revoking it answers
// 200 with it as it is (revoked already), audited, and leaves the device
// and its active certificate alone; an unknown serial is still 404.
func TestDiscardedCertificates(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			ctx := context.Background()
			enr, _, _ := s.enrollOK(t, s.token(t))
			dev := enr.DeviceID
			now := time.Now().UTC().Truncate(time.Millisecond)
			discard := func(deviceID, serial string, notBefore time.Time) {
				c := store.Certificate{Serial: serial, Fingerprint: "fp-" + serial, DeviceID: deviceID, NotBefore: notBefore,
					NotAfter: notBefore.Add(time.Hour), PEM: "-----BEGIN CERTIFICATE-----\n" + serial}
				if err := s.st.DiscardCertificate(ctx, c, "test", now, store.ClaimRef{}, nil); err != nil {
					t.Fatal(err)
				}
			}
			discard(dev, "d15ca4d0", now.Add(time.Minute)) // a renewal that failed: newer than the active one
			discard("never-was", "d15ca4d1", now)          // a first enrollment that failed

			var list apitypes.CertificateList
			s.call(t, "GET", "/api/v1/devices/"+dev+"/certificates", s.viewer, nil, http.StatusOK, &list)
			if len(list.Certificates) != 2 {
				t.Fatalf("certificates %+v, want the discarded one and the active one", list.Certificates)
			}
			d, active := list.Certificates[0], list.Certificates[1]
			if d.Serial != "d15ca4d0" || !d.Discarded || d.Status != "revoked" || d.RevocationReason == nil ||
				*d.RevocationReason != store.ReasonDiscarded || d.RevokedAt == nil || !d.RevokedAt.Equal(now) {
				t.Fatalf("discarded certificate listed as %+v", d)
			}
			if active.Serial != enr.Serial || active.Discarded || active.Status != "active" {
				t.Fatalf("active certificate listed as %+v", active)
			}
			// The flag is only where it is true.
			raw := s.call(t, "GET", "/api/v1/devices/"+dev+"/certificates", s.viewer, nil, http.StatusOK, nil)
			if n := strings.Count(string(raw.body), `"discarded":true`); n != 1 || strings.Contains(string(raw.body), `"discarded":false`) {
				t.Fatalf("discarded flags in %s", raw.body)
			}

			// All discarded certificates, the device-less one included,
			// newest first; the expiring list stays active certificates.
			var all apitypes.ExpiringCertificateList
			s.call(t, "GET", "/api/v1/certificates?discarded=true", s.viewer, nil, http.StatusOK, &all)
			if len(all.Certificates) != 2 {
				t.Fatalf("discarded certificates %+v, want 2", all.Certificates)
			}
			for _, c := range all.Certificates {
				if !c.Discarded || c.Status != "revoked" || c.RevocationReason == nil || *c.RevocationReason != store.ReasonDiscarded {
					t.Errorf("discarded certificate %+v", c)
				}
			}
			if got := all.Certificates[0].DeviceID + " " + all.Certificates[1].DeviceID; got != dev+" never-was" && got != "never-was "+dev {
				t.Errorf("discarded certificates of %s, want %s and never-was", got, dev)
			}
			var one, expiring apitypes.ExpiringCertificateList
			s.call(t, "GET", "/api/v1/certificates?discarded=true&limit=1", s.viewer, nil, http.StatusOK, &one)
			if len(one.Certificates) != 1 {
				t.Errorf("limit=1: %d discarded certificates", len(one.Certificates))
			}
			s.call(t, "GET", "/api/v1/certificates?expiring_within=100000h", s.viewer, nil, http.StatusOK, &expiring)
			if len(expiring.Certificates) != 1 || expiring.Certificates[0].Serial != enr.Serial || expiring.Certificates[0].Discarded ||
				expiring.Certificates[0].RevocationReason != nil {
				t.Errorf("expiring certificates %+v, want only the active one", expiring.Certificates)
			}
			for _, q := range []string{"discarded=yes", "discarded=true&expiring_within=1h", "discarded=false", "discarded=true&limit=x"} {
				wantError(t, s.send(t, request{method: "GET", path: "/api/v1/certificates?" + q, bearer: s.viewer}), http.StatusBadRequest, "invalid_argument")
			}
			wantError(t, s.send(t, request{method: "GET", path: "/api/v1/certificates?discarded=true"}), http.StatusUnauthorized, "unauthenticated")

			for _, serial := range []string{"d15ca4d0", "d15ca4d0", "d15ca4d1"} {
				var out apitypes.CertificateResult
				s.call(t, "POST", "/api/v1/certificates/"+serial+"/revoke", s.admin, apitypes.RevokeRequest{Reason: "keyCompromise"}, http.StatusOK, &out)
				if out.Serial != serial || !out.Discarded || out.Status != "revoked" || out.RevocationReason == nil ||
					*out.RevocationReason != store.ReasonDiscarded || len(out.Warnings) != 0 {
					t.Fatalf("revoke discarded %s: %+v, want it revoked as it was, without warnings", serial, out)
				}
			}
			wantError(t, s.call(t, "POST", "/api/v1/certificates/0badc0de/revoke", s.admin, apitypes.RevokeRequest{}, http.StatusNotFound, nil),
				http.StatusNotFound, "not_found")

			var devView apitypes.Device
			s.call(t, "GET", "/api/v1/devices/"+dev, s.viewer, nil, http.StatusOK, &devView)
			if c, err := s.st.GetCertificate(ctx, enr.Serial); err != nil || c.Status != store.CertActive || devView.Status != "active" {
				t.Fatalf("after revoking its discarded certificate: device %s, active certificate %s %v", devView.Status, c.Status, err)
			}
			var events apitypes.AuditEventList
			s.call(t, "GET", "/api/v1/audit?object_type=certificate&object_id=d15ca4d0", s.viewer, nil, http.StatusOK, &events)
			if len(events.Events) != 2 || !strings.Contains(events.Events[0].Detail, "discarded=true") {
				t.Fatalf("audit of the revocations of a discarded certificate: %+v", events.Events)
			}
		})
	}
}
