package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestRevokeCommittedWhileFollowUpsLag: a revocation whose CRL publication
// and session kick fail is committed (the device is denied, the certificate
// revoked); the API says so with 200 and warnings, not a 503 that reads as
// "not revoked".
func TestRevokeCommittedWhileFollowUpsLag(t *testing.T) {
	var core *authz.Authorizer
	var syncer *authzsync.Syncer
	s := newStack(t, testdb.SQLite(t), func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			core = authz.New(authz.Config{})
			svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: core})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.EnsureActive(context.Background()); err != nil {
				t.Fatal(err)
			}
			if syncer, err = authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: core}); err != nil {
				t.Fatal(err)
			}
			rev, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: syncer, CRL: downCRL{}, Sessions: downSessions{}})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Policies, cfg.PolicyVersions, cfg.Decisions, cfg.Revoke = svc, st, core, rev
		}
	})
	ctx := context.Background()
	allowed := func(id string) bool {
		d, err := core.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Topic: "fleets/default/devices/" + id + "/telemetry/t"})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	cases := []struct {
		name string
		path func(dev, serial string) string
		body map[string]any
		want string // status after the call
		// lag names a follow-up the warnings must mention.
		lag []string
	}{
		{"suspend", func(d, _ string) string { return "/api/v1/devices/" + d + "/suspend" }, map[string]any{}, "suspended", []string{"session kick"}},
		{"reinstate", func(d, _ string) string { return "/api/v1/devices/" + d + "/reinstate" }, map[string]any{}, "active", []string{"kicks were not cancelled"}},
		{"revoke certificate", func(_, sn string) string { return "/api/v1/certificates/" + sn + "/revoke" }, map[string]any{"reason": "keyCompromise"}, "revoked", []string{"session kick", "CRL"}},
		{"revoke device", func(d, _ string) string { return "/api/v1/devices/" + d + "/revoke" }, map[string]any{"reason": "superseded"}, "revoked", []string{"session kick", "CRL"}},
	}
	var dev, serial string
	for _, tc := range cases {
		if dev == "" || tc.name == "revoke device" {
			enr, _, cert := s.enrollOK(t, s.token(t))
			if _, err := syncer.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			dev, serial = enr.DeviceID, ca.SerialHex(cert.SerialNumber)
		}
		var out map[string]any
		s.call(t, "POST", tc.path(dev, serial), s.admin, tc.body, 200, &out)
		if out["status"] != tc.want {
			t.Errorf("%s: status %v, want %q", tc.name, out["status"], tc.want)
		}
		warnings, _ := out["warnings"].([]any)
		joined := fmt.Sprint(warnings...)
		for _, w := range tc.lag {
			if !strings.Contains(joined, w) {
				t.Errorf("%s: warnings %q do not mention %q", tc.name, warnings, w)
			}
		}
		if got, want := allowed(dev), tc.want == "active"; got != want {
			t.Errorf("%s: allowed=%v after the call, want %v", tc.name, got, want)
		}
		if tc.name == "revoke certificate" {
			dev = "" // its device holds no certificate now
		}
	}
}
