package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/authz"
)

// TestRevocationBites: suspend, reinstate, revoke a certificate and revoke a
// device through the API; the decision core on this replica denies as soon
// as each call returns (measured, goal ≤ 100 ms).
func TestRevocationBites(t *testing.T) {
	s := newPolicyStack(t)
	ctx := context.Background()
	enrolled := func() string {
		enr, _, _ := s.enrollOK(t, s.token(t))
		if _, err := s.sync.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return enr.DeviceID
	}
	allowed := func(id string) bool {
		d, err := s.core.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Topic: "fleets/default/devices/" + id + "/telemetry/t"})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	// timed runs call and returns how long after it returned the core denies.
	timed := func(id string, call func()) time.Duration {
		if !allowed(id) {
			t.Fatalf("%s not allowed before the change", id)
		}
		call()
		returned := time.Now()
		for allowed(id) {
			if time.Since(returned) > 2*time.Second {
				t.Fatalf("%s still allowed 2s after the API call returned", id)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(returned)
	}

	dev := enrolled()
	lag := timed(dev, func() {
		s.call(t, "POST", "/api/v1/devices/"+dev+"/suspend", s.admin, map[string]any{"note": "investigating"}, 200, nil)
	})
	if lag > 100*time.Millisecond {
		t.Errorf("suspend → deny took %v", lag)
	}
	wantError(t, s.call(t, "POST", "/api/v1/devices/"+dev+"/suspend", s.admin, map[string]any{}, 409, nil), 409, "conflict")
	s.call(t, "POST", "/api/v1/devices/"+dev+"/reinstate", s.admin, map[string]any{}, 200, nil)
	if !allowed(dev) {
		t.Fatal("reinstated device is still denied")
	}

	var certs apitypes.CertificateList
	s.call(t, "GET", "/api/v1/devices/"+dev+"/certificates", s.viewer, nil, 200, &certs)
	serial := certs.Certificates[0].Serial
	wantError(t, s.call(t, "POST", "/api/v1/certificates/"+serial+"/revoke", s.admin, map[string]any{"reason": "stolen"}, 400, nil), 400, "invalid_argument")
	wantError(t, s.call(t, "POST", "/api/v1/certificates/"+serial+"/revoke", s.viewer, map[string]any{"reason": "keyCompromise"}, 403, nil), 403, "permission_denied")
	lag = timed(dev, func() {
		var out apitypes.CertificateResult
		s.call(t, "POST", "/api/v1/certificates/"+serial+"/revoke", s.admin, apitypes.RevokeRequest{Reason: "keyCompromise", Note: "key found on a forum"}, 200, &out)
		if out.Status != "revoked" || out.RevocationReason == nil || *out.RevocationReason != 1 {
			t.Fatalf("revoked certificate view: %v", out)
		}
	})
	if lag > 100*time.Millisecond {
		t.Errorf("certificate revoke → deny took %v", lag)
	}

	dev2 := enrolled()
	lag = timed(dev2, func() {
		var out apitypes.DeviceRevocation
		s.call(t, "POST", "/api/v1/devices/"+dev2+"/revoke", s.admin, apitypes.RevokeRequest{Reason: "cessationOfOperation"}, 200, &out)
		if out.Status != "revoked" || len(out.RevokedSerials) != 1 || out.Device != dev2 {
			t.Fatalf("revoke device: %+v", out)
		}
	})
	if lag > 100*time.Millisecond {
		t.Errorf("device revoke → deny took %v", lag)
	}
	t.Logf("revoke → deny on this replica: %v (last measured)", lag)
	wantError(t, s.call(t, "POST", "/api/v1/devices/"+dev2+"/reinstate", s.admin, map[string]any{}, 409, nil), 409, "conflict")
	wantError(t, s.call(t, "POST", "/api/v1/devices/ghost/revoke", s.admin, map[string]any{}, 404, nil), 404, "not_found")

	var events apitypes.AuditEventList
	s.call(t, "GET", "/api/v1/audit?object_type=device&object_id="+dev2, s.viewer, nil, 200, &events)
	if len(events.Events) == 0 || events.Events[0].Action != "device.revoke" || events.Events[0].Actor != "token:admin" {
		t.Fatalf("audit: %+v", events)
	}
}
