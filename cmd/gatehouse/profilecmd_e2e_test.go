package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
)

// TestProfileCLI: gatehouse profile create, update and get round-trip a
// profile's settings through the API, EST options included; update
// changes only the flags given; bad values are the API's stable codes.
func TestProfileCLI(t *testing.T) {
	g := newGatehouse(t, "GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123")
	g.serve(t)
	run := func(t *testing.T, args ...string) apitypes.Profile {
		t.Helper()
		r := g.adminCLI(t, append(args, "--server", g.server)...)
		if r.code != 0 {
			t.Fatalf("%v: %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		var p apitypes.Profile
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, r.stdout)
		}
		return p
	}
	p := run(t, "profile", "create", "line", "--key-types", "P-256,Ed25519", "--validity", "30d", "--roles", "telemetry")
	if p.ServerKeygen || p.DeviceIDFrom != "token" || p.Validity != "720h0m0s" || strings.Join(p.KeyTypes, ",") != "P-256,Ed25519" {
		t.Fatalf("created %+v", p)
	}
	p = run(t, "profile", "update", "line", "--server-keygen", "--device-id-from", "csr_serial_number")
	if !p.ServerKeygen || p.DeviceIDFrom != "csr_serial_number" || p.Validity != "720h0m0s" ||
		strings.Join(p.KeyTypes, ",") != "P-256,Ed25519" || strings.Join(p.Roles, ",") != "telemetry" {
		t.Fatalf("updated %+v: want the EST options set and the rest kept", p)
	}
	p = run(t, "profile", "update", "line", "--validity", "10d")
	if !p.ServerKeygen || p.DeviceIDFrom != "csr_serial_number" || p.Validity != "240h0m0s" {
		t.Fatalf("updated %+v: want the EST options kept", p)
	}
	if got := run(t, "profile", "get", "line"); got.Validity != p.Validity || !got.ServerKeygen || got.DeviceIDFrom != p.DeviceIDFrom {
		t.Fatalf("get %+v, want %+v", got, p)
	}
	p = run(t, "profile", "update", "line", "--server-keygen=false", "--device-id-from", "token")
	if p.ServerKeygen || p.DeviceIDFrom != "token" {
		t.Fatalf("updated %+v: want the EST options off", p)
	}
	var api apitypes.Profile
	g.api(t, "GET", "/api/v1/profiles/line", nil, http.StatusOK, &api)
	if api.ServerKeygen || api.DeviceIDFrom != "token" {
		t.Fatalf("API sees %+v", api)
	}
	for _, tc := range []struct {
		args []string
		code string
	}{
		{[]string{"profile", "create", "bad", "--key-types", "P-256", "--validity", "1d", "--device-id-from", "cn"}, "invalid_argument"},
		{[]string{"profile", "update", "line", "--device-id-from", "serial"}, "invalid_argument"},
		{[]string{"profile", "update", "nope", "--server-keygen"}, "not_found"},
	} {
		r := g.adminCLI(t, append(tc.args, "--server", g.server)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.code) {
			t.Errorf("%v: %d\n%s%s, want %s", tc.args, r.code, r.stdout, r.stderr, tc.code)
		}
	}
}
