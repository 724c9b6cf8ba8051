package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSessionKickStatus: suspending a device records a kick per broker; the
// status per broker is visible on the device and in the kick list, a
// failing broker with its error.
func TestSessionKickStatus(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer hook.Close()
	emqx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer emqx.Close()
	var svc *kick.Service
	s := newStack(t, testdb.SQLite(t), func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, _ *ca.CA, _ *audit.Recorder, cfg *api.Config) {
			wh, err := kick.NewWebhook(kick.WebhookConfig{URL: hook.URL, Secret: "0123456789abcdef"})
			if err != nil {
				t.Fatal(err)
			}
			em, err := kick.NewEMQX(kick.EMQXConfig{URL: emqx.URL, APIKey: "k", APISecret: "s"})
			if err != nil {
				t.Fatal(err)
			}
			if svc, err = kick.New(kick.Config{Store: st, Brokers: []kick.Broker{wh, em}}); err != nil {
				t.Fatal(err)
			}
			if cfg.Revoke, err = revoke.New(revoke.Config{Store: st, Jobs: st, Core: noCore{}, Sessions: svc}); err != nil {
				t.Fatal(err)
			}
			cfg.KickTargets = svc
		}
	})
	enr, _, _ := s.enrollOK(t, s.token(t))
	dev := enr.DeviceID

	var got apitypes.DeviceSessions
	s.call(t, "GET", "/api/v1/devices/"+dev+"/sessions", s.viewer, nil, 200, &got)
	if got.Device != dev || len(got.Kicks) != 0 {
		t.Fatalf("before any kick: %+v", got)
	}
	s.call(t, "POST", "/api/v1/devices/"+dev+"/suspend", s.admin, map[string]any{}, 200, nil)
	if n := svc.DeliverDue(context.Background()); n != 2 {
		t.Fatalf("delivered %d kicks, want 2", n)
	}
	s.call(t, "GET", "/api/v1/devices/"+dev+"/sessions", s.viewer, nil, 200, &got)
	if len(got.Kicks) != 2 {
		t.Fatalf("kicks after suspend: %+v", got)
	}
	em, wh := got.Kicks[0], got.Kicks[1]
	if wh.Broker != "webhook" || wh.Status != "done" || wh.DoneAt == nil || wh.NextAttemptAt != nil || wh.Reason != "device.suspend" {
		t.Errorf("webhook kick: %+v", wh)
	}
	if em.Broker != "emqx" || em.Status != "pending" || em.Attempts != 1 || em.NextAttemptAt == nil ||
		em.LastError == "" || em.DoneAt != nil {
		t.Errorf("emqx kick: %+v", em)
	}

	var list apitypes.SessionKickList
	s.call(t, "GET", "/api/v1/session-kicks?status=pending", s.viewer, nil, 200, &list)
	if len(list.Kicks) != 1 || list.Kicks[0].Broker != "emqx" || list.Kicks[0].Device != dev {
		t.Errorf("pending kicks: %+v", list)
	}
	s.call(t, "GET", "/api/v1/session-kicks", s.viewer, nil, 200, &list)
	if len(list.Kicks) != 2 {
		t.Errorf("all kicks: %+v", list)
	}
	// The failed delivery re-checked the EMQX target: the list says it
	// fails, not only the kick; the webhook cannot be checked.
	var targets apitypes.SessionKickList
	s.call(t, "GET", "/api/v1/session-kicks", s.viewer, nil, 200, &targets)
	if tg := targets.Targets; len(tg) != 2 || tg[0].Broker != "webhook" || tg[0].Status != "unchecked" ||
		tg[1].Broker != "emqx" || tg[1].Status != "error" || !strings.Contains(tg[1].Error, "503") {
		t.Errorf("kick targets: %+v", tg)
	}

	// Reinstating cancels the kick still waiting on EMQX: a late retry must
	// not cut the session the device opens anew. The delivered one stays.
	s.call(t, "POST", "/api/v1/devices/"+dev+"/reinstate", s.admin, map[string]any{}, 200, nil)
	s.call(t, "GET", "/api/v1/devices/"+dev+"/sessions", s.viewer, nil, 200, &got)
	if len(got.Kicks) != 2 || got.Kicks[0].Status != "cancelled" || got.Kicks[1].Status != "done" {
		t.Fatalf("kicks after reinstate: %+v", got)
	}
	if n := svc.DeliverDue(context.Background()); n != 0 {
		t.Errorf("delivered %d kicks after reinstate, want 0", n)
	}
	s.call(t, "GET", "/api/v1/session-kicks?status=cancelled", s.viewer, nil, 200, &list)
	if len(list.Kicks) != 1 || list.Kicks[0].Broker != "emqx" {
		t.Errorf("cancelled kicks: %+v", list)
	}

	wantError(t, s.call(t, "GET", "/api/v1/session-kicks?status=stuck", s.viewer, nil, 400, nil), 400, "invalid_argument")
	wantError(t, s.call(t, "GET", "/api/v1/session-kicks?limit=-1", s.viewer, nil, 400, nil), 400, "invalid_argument")
	wantError(t, s.call(t, "GET", "/api/v1/devices/no-such-device/sessions", s.viewer, nil, 404, nil), 404, "not_found")
	wantError(t, s.call(t, "GET", "/api/v1/session-kicks", "", nil, 401, nil), 401, "unauthenticated")
}
