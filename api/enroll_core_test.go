package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

const enrollHookSecret = "enroll-core-hook-secret"

// withEnrollCore wires the decision core as the server binary does, with
// the enrollment service refreshing it, and serves the broker hooks on it.
// The device sync polls once an hour: within a test only the refresh at
// enrollment explains the core knowing a new device or certificate.
func withEnrollCore(core **authz.Authorizer, hooksURL *string) stackOpt {
	return func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			ctx, cancel := context.WithCancel(context.Background())
			az := authz.New(authz.Config{})
			svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: az})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.EnsureActive(ctx); err != nil {
				t.Fatal(err)
			}
			syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: az, Interval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := syncer.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = syncer.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: rec, Issuer: theCA, Core: syncer})
			if err != nil {
				t.Fatal(err)
			}
			h, err := hooks.New(hooks.Config{Authorizer: az, Certs: theCA, Secret: enrollHookSecret})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			cfg.Enroll = enr
			*core, *hooksURL = az, srv.URL
		}
	}
}

// hookAllows asks the native hook endpoint, as a broker would.
func hookAllows(t testing.TB, hooksURL string, req hooks.NativeRequest) bool {
	t.Helper()
	hr, err := http.NewRequest(http.MethodPost, hooksURL+"/hooks/v1/authorize", bytes.NewReader(mustJSON(t, req)))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Gatehouse-Hook-Secret", enrollHookSecret)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out hooks.NativeResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("hook answer %d: %v", resp.StatusCode, err)
	}
	return out.Allow
}

// TestEnrollThenConnectAtOnce is issue 9 item 10: a device that enrolls
// through the API and connects the moment the reply arrives is allowed
// (CONNECT and PUBLISH through a hook), not denied as an unknown device
// until the next poll; after a renewal, the new certificate is the current
// one at once. The device sync polls once an hour here.
func TestEnrollThenConnectAtOnce(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			var core *authz.Authorizer
			var hooksURL string
			s := newStack(t, testdb.DSN(t, backend), withEnrollCore(&core, &hooksURL))

			for i := range 5 {
				enr, _, _ := s.enrollOK(t, s.token(t))
				id := enr.DeviceID
				if !hookAllows(t, hooksURL, hooks.NativeRequest{Action: "connect", ClientID: id, Identity: id}) {
					_, reason := reasonOf(t, core, id)
					t.Fatalf("enrollment %d: CONNECT right after the enroll call returned is denied (%q)", i, reason)
				}
				if !hookAllows(t, hooksURL, hooks.NativeRequest{Action: "publish", ClientID: id, Certificate: enr.Certificate,
					Topic: "fleets/default/devices/" + id + "/telemetry/t", QoS: 1}) {
					_, reason := reasonOf(t, core, id)
					t.Fatalf("enrollment %d: PUBLISH with the new certificate right after enrolling is denied (%q)", i, reason)
				}
			}

			// Renewal: a profile whose window is open at once.
			s.call(t, http.MethodPost, "/api/v1/profiles", s.admin,
				map[string]any{"name": "eager", "key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
			tok := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 1, "ttl": "1h"}).Tokens[0].Token
			first, key, _ := s.enrollOK(t, tok)
			var renewed apitypes.EnrollResponse
			s.call(t, http.MethodPost, "/api/v1/renew", "", apitypes.RenewRequest{Certificate: first.Certificate, CSR: s.challengeCSR(t, first.Certificate, key)},
				http.StatusCreated, &renewed)
			id := first.DeviceID
			if !hookAllows(t, hooksURL, hooks.NativeRequest{Action: "connect", ClientID: id, Certificate: renewed.Certificate}) {
				d, _ := core.Device(id)
				t.Fatalf("CONNECT with the renewed certificate right after renewal is denied (core holds serial %s, renewed %s)", d.CertSerial, renewed.Serial)
			}
		})
	}
}
