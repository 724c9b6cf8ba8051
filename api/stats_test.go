package api_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestDashboardEndpoints covers the read endpoints behind the UI dashboard:
// device counts, expiring certificates, recent denies and audit filters.
func TestDashboardEndpoints(t *testing.T) {
	ps := &policyStack{}
	ps.stack = newStack(t, testdb.SQLite(t), withPolicies(&ps.core, &ps.sync))
	s := ps.stack
	ctx := context.Background()

	var st apitypes.Stats
	s.call(t, "GET", "/api/v1/stats", s.viewer, nil, 200, &st)
	if st.Devices.Total != 0 || len(st.Devices.ByFleet) != 0 || len(st.Devices.ByStatus) != 4 || st.PolicyVersion != 1 {
		t.Fatalf("empty stats: %+v", st)
	}

	a, _, _ := s.enrollOK(t, s.token(t))
	b, _, _ := s.enrollOK(t, s.token(t))
	s.call(t, "POST", "/api/v1/devices/"+b.DeviceID+"/suspend", s.admin, map[string]string{"note": "test"}, 200, nil)

	s.call(t, "GET", "/api/v1/stats", s.viewer, nil, 200, &st)
	if st.Devices.Total != 2 || st.Devices.ByStatus["active"] != 1 || st.Devices.ByStatus["suspended"] != 1 ||
		st.Devices.ByStatus["pending"] != 0 || len(st.Devices.ByFleet) != 1 || st.Devices.ByFleet[0].Fleet != "default" ||
		st.Devices.ByFleet[0].Total != 2 || st.Devices.ByFleet[0].ByStatus["suspended"] != 1 {
		t.Fatalf("stats after two enrollments and a suspend: %+v", st)
	}

	// The default profile issues 30-day certificates.
	for _, c := range []struct {
		query string
		want  int
	}{{"expiring_within=168h", 0}, {"expiring_within=744h", 2}, {"expiring_within=744h&limit=1", 1}} {
		var out apitypes.ExpiringCertificateList
		s.call(t, "GET", "/api/v1/certificates?"+c.query, s.viewer, nil, 200, &out)
		if len(out.Certificates) != c.want {
			t.Errorf("%s: %d certificates, want %d", c.query, len(out.Certificates), c.want)
		}
		for _, cert := range out.Certificates {
			if cert.DeviceID == "" || cert.Status != "active" || cert.Serial == "" {
				t.Errorf("%s: certificate %+v", c.query, cert)
			}
		}
	}
	for _, q := range []string{"", "expiring_within=soon", "expiring_within=-1h", "expiring_within=1h&limit=x", "expiring_within=1h&limit=-1"} {
		wantError(t, s.send(t, request{method: "GET", path: "/api/v1/certificates?" + q, bearer: s.viewer}), http.StatusBadRequest, fault.InvalidArgument)
	}

	// A deny from the live core shows up, newest first, filterable by device.
	if _, err := ps.sync.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []authz.Request{
		{Action: authz.Publish, Identity: a.DeviceID, ClientID: a.DeviceID, Topic: "fleets/default/devices/" + a.DeviceID + "/telemetry/t"}, // allowed
		{Action: authz.Publish, Identity: a.DeviceID, ClientID: a.DeviceID, Topic: "fleets/default/devices/other/telemetry/t"},
		{Action: authz.Connect, Identity: b.DeviceID, ClientID: b.DeviceID},
	} {
		if _, err := ps.core.Authorize(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var all, one, none apitypes.DenyList
	s.call(t, "GET", "/api/v1/decisions/recent-denies", s.viewer, nil, 200, &all)
	if len(all.Denies) != 2 || all.Denies[0].Device != b.DeviceID || all.Denies[0].Reason != "device is suspended" ||
		all.Denies[1].Topic != "fleets/default/devices/other/telemetry/t" || all.Denies[1].Reason != "no grant matches" {
		t.Fatalf("recent denies: %+v", all)
	}
	s.call(t, "GET", "/api/v1/decisions/recent-denies?device="+url.QueryEscape(a.DeviceID), s.viewer, nil, 200, &one)
	if len(one.Denies) != 1 || one.Denies[0].Device != a.DeviceID {
		t.Errorf("denies of %s: %+v", a.DeviceID, one)
	}
	s.call(t, "GET", "/api/v1/decisions/recent-denies?device=ghost&limit=5", s.viewer, nil, 200, &none)
	if len(none.Denies) != 0 {
		t.Errorf("denies of an unknown device: %+v", none)
	}
	wantError(t, s.send(t, request{method: "GET", path: "/api/v1/decisions/recent-denies?limit=many", bearer: s.viewer}), http.StatusBadRequest, fault.InvalidArgument)

	// Audit filters: action and a time window.
	now := time.Now().UTC()
	for _, c := range []struct {
		query string
		want  int
	}{
		{"action=device.suspend", 1},
		{"action=device.suspend&object_id=" + url.QueryEscape(b.DeviceID), 1},
		{"action=device.suspend&object_id=" + url.QueryEscape(a.DeviceID), 0},
		{"action=device.suspend&since=" + now.Add(-time.Hour).Format(time.RFC3339), 1},
		{"action=device.suspend&since=" + now.Add(time.Hour).Format(time.RFC3339), 0},
		{"action=device.suspend&until=" + now.Add(-time.Hour).Format(time.RFC3339), 0},
	} {
		var out apitypes.AuditEventList
		s.call(t, "GET", "/api/v1/audit?"+c.query, s.viewer, nil, 200, &out)
		if len(out.Events) != c.want {
			t.Errorf("audit %s: %d events, want %d", c.query, len(out.Events), c.want)
		}
	}
	for _, q := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z"} {
		wantError(t, s.send(t, request{method: "GET", path: "/api/v1/audit?" + q, bearer: s.viewer}), http.StatusBadRequest, fault.InvalidArgument)
	}

	// Devices by label: key=value, exact.
	s.call(t, "PATCH", "/api/v1/devices/"+a.DeviceID, s.admin, map[string]any{"labels": map[string]string{"room": "lab"}}, 200, nil)
	for _, c := range []struct {
		query string
		want  int
	}{{"label=room%3Dlab", 1}, {"label=room%3DLab", 0}, {"label=room%3D", 0}, {"label=room%3Dlab&status=suspended", 0}} {
		var out apitypes.DeviceList
		s.call(t, "GET", "/api/v1/devices?"+c.query, s.viewer, nil, 200, &out)
		if len(out.Devices) != c.want {
			t.Errorf("devices?%s: %d, want %d", c.query, len(out.Devices), c.want)
		}
	}
	for _, q := range []string{"label=room", "label=%3Dlab"} {
		wantError(t, s.send(t, request{method: "GET", path: "/api/v1/devices?" + q, bearer: s.viewer}), http.StatusBadRequest, fault.InvalidArgument)
	}

	// Reads need credentials.
	for _, p := range []string{"/api/v1/stats", "/api/v1/certificates?expiring_within=1h", "/api/v1/decisions/recent-denies"} {
		wantError(t, s.send(t, request{method: "GET", path: p}), http.StatusUnauthorized, fault.Unauthenticated)
	}
}
