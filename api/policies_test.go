package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

type policyStack struct {
	*stack
	core *authz.Authorizer
	sync *authzsync.Syncer
}

// withPolicies adds the decision core, device sync and policy service, as
// the server binary wires them.
func withPolicies(core **authz.Authorizer, syncer **authzsync.Syncer) stackOpt {
	return func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			az := authz.New(authz.Config{})
			svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: az})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.EnsureActive(context.Background()); err != nil {
				t.Fatal(err)
			}
			s, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: az})
			if err != nil {
				t.Fatal(err)
			}
			rev, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: s})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Policies, cfg.PolicyVersions, cfg.Decisions, cfg.Revoke = svc, st, az, rev
			*core, *syncer = az, s
		}
	}
}

func newPolicyStack(t *testing.T) *policyStack {
	ps := &policyStack{}
	ps.stack = newStack(t, testdb.SQLite(t), withPolicies(&ps.core, &ps.sync))
	return ps
}

// TestPolicyLifecycle walks the operator's path: the default is active as
// version 1; a draft with a syntax error is refused at its line; the fixed
// draft is stored, tested, simulated, activated; the live core follows; a
// rollback restores version 1; diff shows the change; viewers cannot activate.
func TestPolicyLifecycle(t *testing.T) {
	s := newPolicyStack(t)
	ctx := context.Background()
	var list apitypes.PolicyVersionList
	s.call(t, "GET", "/api/v1/policies", s.viewer, nil, 200, &list)
	if list.Active != 1 || len(list.Versions) != 1 {
		t.Fatalf("fresh install: %+v", list)
	}

	// Enroll a sensor so the simulator and the live core know a device.
	enr, _, _ := s.enrollOK(t, s.token(t))
	if _, err := s.sync.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	dev := enr.DeviceID

	broken := strings.Replace(policy.Default().Policy, `"rule": "own-commands"}`, `"rule": "own-commands"`, 1)
	r := s.call(t, "POST", "/api/v1/policies/validate", s.admin, map[string]any{"policy": broken}, 400, nil)
	var pr apitypes.ErrorBody
	if err := jsonUnmarshal(r.body, &pr); err != nil || pr.Error.Code != "policy_invalid" || len(pr.Error.Problems) == 0 ||
		pr.Error.Problems[0].Line == 0 || pr.Error.Problems[0].Module != "policy" {
		t.Fatalf("validate broken: %v %s", err, r)
	}
	s.call(t, "POST", "/api/v1/policies", s.admin, map[string]any{"policy": broken, "tests": policy.Default().Tests}, 400, nil)

	// Version 2 lets sensors also publish under fleets/<fleet>/devices/<id>/logs/#.
	v2 := policy.Default()
	v2.Policy += "\ngrants contains {\"action\": \"publish\", \"filter\": concat(\"/\", [own, \"logs\", \"#\"]), \"rule\": \"own-logs\"}\n"
	var created apitypes.PolicyVersion
	s.call(t, "POST", "/api/v1/policies", s.admin, apitypes.PolicySource{Policy: v2.Policy, Tests: v2.Tests, Comment: "logs"}, 201, &created)
	if created.Version != 2 || created.Active || created.Comment != "logs" {
		t.Fatalf("created: %v", created)
	}
	var rep apitypes.PolicyTestReport
	s.call(t, "POST", "/api/v1/policies/2/test", s.admin, nil, 200, &rep)
	if rep.Failed != 0 || rep.Passed == 0 || len(rep.Results) != rep.Passed {
		t.Fatalf("tests: %+v", rep)
	}
	simulate := func(version int64, topic string) apitypes.SimulateResponse {
		var out apitypes.SimulateResponse
		s.call(t, "POST", "/api/v1/decisions/simulate", s.viewer, apitypes.SimulateRequest{Device: dev, Action: "publish",
			Topic: topic, Version: version}, 200, &out)
		return out
	}
	logs := "fleets/default/devices/" + dev + "/logs/boot"
	if d := simulate(2, logs); !d.Allow || d.Rule != "own-logs" || d.PolicyVersion != 2 || d.Device != dev {
		t.Fatalf("simulate v2: %v", d)
	}
	if d := simulate(0, logs); d.Allow || d.Reason != "no grant matches" || d.PolicyVersion != 1 {
		t.Fatalf("simulate active (v1): %v", d)
	}
	live := func() bool {
		d, err := s.core.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: dev, ClientID: dev, Topic: logs})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	if live() {
		t.Fatal("live core allows logs before activation")
	}
	wantError(t, s.call(t, "POST", "/api/v1/policies/2/activate", s.viewer, nil, 403, nil), 403, "permission_denied")
	s.call(t, "POST", "/api/v1/policies/2/activate", s.admin, nil, 200, nil)
	if !live() {
		t.Fatal("live core does not follow the activation")
	}
	var diff apitypes.PolicyDiff
	s.call(t, "GET", "/api/v1/policies/diff?from=1&to=2", s.viewer, nil, 200, &diff)
	if !strings.Contains(diff.Diff, "+ grants contains {\"action\": \"publish\", \"filter\": concat(\"/\", [own, \"logs\"") {
		t.Fatalf("diff:\n%s", diff.Diff)
	}
	// Roll back: activate version 1 again.
	s.call(t, "POST", "/api/v1/policies/1/activate", s.admin, nil, 200, nil)
	if live() {
		t.Fatal("rollback did not take effect")
	}
	// A version whose tests fail cannot be activated.
	bad := policy.Source{Policy: policy.Default().Policy, Tests: "package gatehouse.authz_test\n\ntest_fails if { false }\n"}
	var v3 apitypes.PolicyVersion
	s.call(t, "POST", "/api/v1/policies", s.admin, apitypes.PolicySource{Policy: bad.Policy, Tests: bad.Tests}, 201, &v3)
	r = s.call(t, "POST", "/api/v1/policies/3/activate", s.admin, nil, http.StatusUnprocessableEntity, nil)
	var refused apitypes.PolicyActivationRefused
	if err := jsonUnmarshal(r.body, &refused); err != nil || refused.Error.Code != policy.TestsFailed || refused.Tests.Failed != 1 ||
		len(refused.Tests.Results) != 1 || refused.Tests.Results[0].Name != "test_fails" {
		t.Fatalf("activate failing version: %s", r)
	}
	if s.core.PolicyVersion() != 1 {
		t.Fatalf("active version %d after a refused activation, want 1", s.core.PolicyVersion())
	}
	wantError(t, s.call(t, "POST", "/api/v1/policies/99/activate", s.admin, nil, 404, nil), 404, "not_found")
	wantError(t, s.call(t, "POST", "/api/v1/decisions/simulate", s.viewer, apitypes.SimulateRequest{Device: "ghost", Action: "connect"}, 404, nil), 404, "not_found")
}
