package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestPolicySandboxOverAPI, on SQLite and PostgreSQL: a policy calling
// http.send is refused at validate and create with a located problem; the
// same policy stored before the sandbox existed cannot be simulated,
// tested or activated (4xx, never 5xx), and its URL never receives a
// request. A runaway policy is stored (it compiles) but its simulation is
// a policy_timeout deny and its tests are cut off, each within a bound; a
// policy failing at evaluation simulates as 422, not 500.
func TestPolicySandboxOverAPI(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := &policyStack{}
			s.stack = newStack(t, testdb.DSN(t, backend), withPolicies(&s.core, &s.sync))
			ctx := context.Background()
			var hits atomic.Int64
			internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				_, _ = w.Write([]byte("internal secret"))
			}))
			defer internal.Close()
			enr, _, _ := s.enrollOK(t, s.token(t))
			if _, err := s.sync.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			dev := enr.DeviceID

			fetching := "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\", \"rule\": r} if {\n" +
				fmt.Sprintf("\tr := http.send({\"method\": \"GET\", \"url\": %q}).raw_body\n}\n", internal.URL)
			for _, path := range []string{"/api/v1/policies/validate", "/api/v1/policies"} {
				r := s.call(t, "POST", path, s.admin, map[string]any{"policy": fetching, "tests": policy.Default().Tests}, 400, nil)
				var pr apitypes.ErrorBody
				if err := jsonUnmarshal(r.body, &pr); err != nil || pr.Error.Code != "policy_invalid" || len(pr.Error.Problems) == 0 {
					t.Fatalf("%s: %v %s", path, err, r)
				}
				if p := pr.Error.Problems[0]; p.Module != "policy" || p.Line != 4 || p.Column == 0 || !strings.Contains(p.Message, "http.send is not allowed") {
					t.Fatalf("%s: problem %+v", path, p)
				}
			}

			// As if stored by an earlier Gatehouse, behind the API's back.
			old, err := s.st.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: fetching, Tests: policy.Default().Tests, CreatedBy: "earlier release"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sim := func(version int64, want int) reply {
				return s.call(t, "POST", "/api/v1/decisions/simulate", s.viewer, apitypes.SimulateRequest{Device: dev, Action: "publish",
					Topic: "a", Version: version}, want, nil)
			}
			refused := func(what string, r reply) {
				t.Helper()
				var pr apitypes.ErrorBody
				if err := jsonUnmarshal(r.body, &pr); err != nil || pr.Error.Code != "policy_invalid" || len(pr.Error.Problems) == 0 {
					t.Fatalf("%s: %v %s", what, err, r)
				}
			}
			refused("simulate", sim(old.Version, 400))
			refused("test", s.call(t, "POST", fmt.Sprintf("/api/v1/policies/%d/test", old.Version), s.admin, nil, 400, nil))
			refused("activate", s.call(t, "POST", fmt.Sprintf("/api/v1/policies/%d/activate", old.Version), s.admin, nil, 400, nil))
			if n := hits.Load(); n != 0 {
				t.Fatalf("the internal server got %d requests from policies, want 0", n)
			}

			// A runaway policy compiles, so it is stored; evaluating it is cut off.
			// 1e8 steps: seconds on any machine (numbers.range(1, 2e6) ran
			// under the 1s test bound on an idle one), and no memory.
			runaway := "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\"} if {\n" +
				"\tcount([1 | some i in numbers.range(1, 10000); some j in numbers.range(1, 10000); i * j == -1]) == 0\n}\n"
			var created apitypes.PolicyVersion
			s.call(t, "POST", "/api/v1/policies", s.admin, apitypes.PolicySource{Policy: runaway,
				Tests: "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_grants if { count(authz.grants) == 1 }\n"}, 201, &created)
			v := created.Version
			start := time.Now()
			var out apitypes.SimulateResponse
			s.call(t, "POST", "/api/v1/decisions/simulate", s.viewer, apitypes.SimulateRequest{Device: dev, Action: "publish", Topic: "a", Version: v}, 200, &out)
			if out.Allow || out.Reason != "policy_timeout" || time.Since(start) > 2*time.Second {
				t.Fatalf("simulate runaway: %v after %v", out, time.Since(start))
			}
			start = time.Now()
			var rep apitypes.PolicyTestReport
			s.call(t, "POST", fmt.Sprintf("/api/v1/policies/%d/test", v), s.admin, nil, 200, &rep)
			if rep.Failed != 1 || !strings.Contains(rep.Results[0].Error, "cut off") || time.Since(start) > policy.TestTimeout+2*time.Second {
				t.Fatalf("tests of the runaway policy: %+v after %v", rep, time.Since(start))
			}
			s.call(t, "POST", fmt.Sprintf("/api/v1/policies/%d/activate", v), s.admin, nil, http.StatusUnprocessableEntity, nil)

			// Two values for one complete rule: an evaluation error, shown as 422.
			conflict := "package gatehouse.authz\n\nx := input.device.id\n\nx := \"other\"\n\ngrants contains {\"action\": \"publish\", \"filter\": x}\n"
			s.call(t, "POST", "/api/v1/policies", s.admin, apitypes.PolicySource{Policy: conflict}, 201, &created)
			wantError(t, sim(created.Version, 422), 422, "policy_eval_failed")
			if s.core.PolicyVersion() != 1 {
				t.Fatalf("active version %d, want the default (1)", s.core.PolicyVersion())
			}
		})
	}
}
