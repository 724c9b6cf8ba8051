package policy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestSandboxRefusesBuiltins: a policy (or its tests) calling a network,
// environment, clock, random or unbounded built-in does not compile; the
// problem names the built-in and points at the call. The server a policy
// would fetch never hears from it.
func TestSandboxRefusesBuiltins(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"secret": "internal"}`))
	}))
	defer srv.Close()
	const head = "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\", \"rule\": r} if {\n"
	cases := []struct{ builtin, call string }{
		{"http.send", fmt.Sprintf(`	r := http.send({"method": "GET", "url": %q}).raw_body`, srv.URL)},
		{"net.lookup_ip_addr", `	r := sprintf("%v", [net.lookup_ip_addr("example.com")])`},
		{"opa.runtime", `	r := sprintf("%v", [opa.runtime().env])`},
		{"rand.intn", `	r := sprintf("%d", [rand.intn("x", 10)])`},
		{"uuid.rfc4122", `	r := uuid.rfc4122("x")`},
		{"time.now_ns", `	r := sprintf("%d", [time.now_ns()])`},
		{"io.jwt.decode_verify", `	r := sprintf("%v", [io.jwt.decode_verify("x", {"secret": "s"})])`},
		{"io.jwt.encode_sign", `	r := io.jwt.encode_sign({"alg": "HS256"}, {}, {"kty": "oct", "k": "AA"})`},
		{"crypto.x509.parse_and_verify_certificates", `	r := sprintf("%v", [crypto.x509.parse_and_verify_certificates("x")])`},
		{"providers.aws.sign_req", `	r := sprintf("%v", [providers.aws.sign_req({}, {}, 0)])`},
		{"json.match_schema", `	r := sprintf("%v", [json.match_schema({}, {"$ref": "http://example.com/s.json"})])`},
		{"strings.render_template", `	r := strings.render_template("{{.a}}", {"a": "b"})`},
		{"graph.reachable_paths", `	r := sprintf("%v", [graph.reachable_paths({}, [])])`},
		{"rego.parse_module", `	r := sprintf("%v", [rego.parse_module("m", "package m")])`},
		// One call allocates 2^n bits: bits.lsh(1, 1e12) is a 125 GB
		// allocation the runtime cannot survive (fatal, not a panic).
		{"bits.lsh", `	r := sprintf("%d", [bits.lsh(1, 1000000000000)])`},
	}
	for _, tc := range cases {
		t.Run(tc.builtin, func(t *testing.T) {
			for _, where := range []string{"policy", "tests"} {
				src := policy.Source{Policy: head + tc.call + "\n}\n"}
				if where == "tests" {
					src = policy.Source{Policy: "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\"}\n",
						Tests: "package gatehouse.authz_test\n\ntest_x if {\n" + tc.call + "\n\tr != \"\"\n}\n"}
				}
				_, err := policy.Compile(context.Background(), src)
				var ce *policy.CompileError
				if !errors.As(err, &ce) || fault.CodeOf(err) != policy.Invalid {
					t.Fatalf("%s: err = %v, want a policy_invalid compile error", where, err)
				}
				p := ce.Problems[0]
				if p.Module != where || p.Line != 4 || p.Column < 2 ||
					!strings.Contains(p.Message, "built-in "+tc.builtin+" is not allowed") {
					t.Fatalf("%s: problem %+v, want %s:4 naming %s", where, p, where, tc.builtin)
				}
			}
		})
	}
	// Mocking a refused built-in with `with` does not sneak it in either.
	_, err := policy.Compile(context.Background(), policy.Source{Policy: head + "\tr := \"x\"\n}\n",
		Tests: "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_x if {\n\tcount(authz.grants) == 1 with http.send as {}\n}\n"})
	if fault.CodeOf(err) != policy.Invalid {
		t.Fatalf("with http.send: err = %v, want policy_invalid", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the policy's server got %d requests, want 0", n)
	}
}

// Policies that run away: a built-in generating 2e6 numbers, and a
// 9e6-step loop.
var runaway = map[string]string{
	"numbers.range 2e6": "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\"} if {\n\tcount(numbers.range(1, 2000000)) > 0\n}\n",
	"busy loop": "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\"} if {\n" +
		"\tcount([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i * j == -1]) == 0\n}\n",
}

// TestGrantsCutOffAtDeadline: a runaway evaluation stops at its context's
// deadline (OPA checks it, also inside numbers.range) with policy_timeout,
// not after finishing, and not as "no grants".
func TestGrantsCutOffAtDeadline(t *testing.T) {
	for name, src := range runaway {
		t.Run(name, func(t *testing.T) {
			p, err := policy.Compile(context.Background(), policy.Source{Policy: src})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			gs, err := p.Grants(ctx, policy.Device{ID: "d", Fleet: "f"})
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			t.Logf("%s: cut off after %v, allocated %d MB", name, took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20)
			if fault.CodeOf(err) != policy.Timeout || gs != nil {
				t.Fatalf("grants %v, err %v: want policy_timeout", gs, err)
			}
			// 100ms plus scheduling slack on a loaded CI machine; the
			// uncut evaluations take seconds.
			if took > time.Second {
				t.Fatalf("evaluation took %v, want it cut off near 100ms", took)
			}
		})
	}
}

// TestEvalFailureIsNotATimeout: a policy that fails at evaluation (two
// values for one complete rule) is policy_eval_failed, an error the
// simulator shows as 4xx.
func TestEvalFailureIsNotATimeout(t *testing.T) {
	p, err := policy.Compile(context.Background(), policy.Source{Policy: "package gatehouse.authz\n\nx := input.device.id\n\nx := \"other\"\n\ngrants contains {\"action\": \"publish\", \"filter\": x}\n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Grants(context.Background(), policy.Device{ID: "d", Fleet: "f"})
	if fault.CodeOf(err) != policy.EvalFailed {
		t.Fatalf("err %v, want policy_eval_failed", err)
	}
}

// TestPolicyTestsCutOff: a runaway test rule fails with a timeout within
// the per-test bound instead of holding the activation request.
func TestPolicyTestsCutOff(t *testing.T) {
	p, err := policy.Compile(context.Background(), policy.Source{Policy: runaway["busy loop"],
		Tests: "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_slow if { count(authz.grants) == 1 }\n\ntest_fast if { true }\n"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := p.Test(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > policy.TestTimeout+2*time.Second {
		t.Fatalf("tests took %v", took)
	}
	if rep.OK() || rep.Failed != 1 || rep.Passed != 1 || !strings.Contains(rep.Results[0].Error, "cut off") {
		t.Fatalf("report %+v, want test_slow cut off and test_fast passed", rep)
	}
}

// oneLongCall is a policy whose grants for the device "slow" spend seconds
// in one built-in call that never looks at the deadline: regex.match is
// linear in the text, but times the automaton's size (300 alternatives
// over 512 KiB here). Every other device gets its grant at once.
func oneLongCall(t *testing.T) *policy.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString("package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"ok/#\"} if input.device.id != \"slow\"\n\n")
	b.WriteString("grants contains {\"action\": \"publish\", \"filter\": \"#\"} if {\n\tinput.device.id == \"slow\"\n\ts0 := \"ab\"\n")
	for i := 1; i <= 18; i++ {
		fmt.Fprintf(&b, "\ts%d := concat(\"\", [s%d, s%d])\n", i, i-1, i-1)
	}
	b.WriteString("\tregex.match(\"(?:a|b){0,300}c\", s18)\n}\n")
	p, err := policy.Compile(context.Background(), policy.Source{Policy: b.String()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGrantsReturnAtDeadlineInsideOneCall: OPA checks the deadline between
// steps, not inside every built-in; an evaluation stuck in one long call
// still answers policy_timeout near its deadline (the decision must not
// wait for the call), and while that call runs on, further evaluations of
// the same version are refused at once instead of each starting another
// one (a slow policy would otherwise cost a core per broker request). When
// it ends, evaluations resume.
func TestGrantsReturnAtDeadlineInsideOneCall(t *testing.T) {
	p := oneLongCall(t)
	grants := func(id string) ([]policy.Grant, error, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		gs, err := p.Grants(ctx, policy.Device{ID: id, Fleet: "f"})
		return gs, err, time.Since(start)
	}
	start := time.Now()
	gs, err, took := grants("slow")
	if fault.CodeOf(err) != policy.Timeout || gs != nil || took > time.Second {
		t.Fatalf("slow: grants %v, err %v after %v: want policy_timeout near 100ms", gs, err, took)
	}
	gs, err, took = grants("fast")
	if fault.CodeOf(err) != policy.Timeout || took > 50*time.Millisecond {
		t.Fatalf("fast, while the slow call runs on: grants %v, err %v after %v: want policy_timeout at once", gs, err, took)
	}
	for {
		gs, err, _ = grants("fast")
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("evaluations still refused a minute later: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(gs) != 1 || gs[0].Filter != "ok/#" {
		t.Fatalf("fast after the slow call ended: %v", gs)
	}
	t.Logf("the slow call ran %v; the decision took %v", time.Since(start).Round(time.Millisecond), took)
}

// TestTestsModuleGrantsNothing: the tests module is compiled with the
// policy for the test run, but a rule it adds to package gatehouse.authz
// never reaches the live grants: what the policy text says is all a device
// gets, whatever a reviewer did not read in the tests.
func TestTestsModuleGrantsNothing(t *testing.T) {
	p, err := policy.Compile(context.Background(), policy.Source{
		Policy: "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"own/#\", \"rule\": \"own\"}\n",
		Tests: "package gatehouse.authz\n\ngrants contains {\"action\": \"subscribe\", \"filter\": \"#\", \"rule\": \"hidden\"}\n\n" +
			"test_own if { count(grants) >= 1 }\n"})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := p.Grants(context.Background(), policy.Device{ID: "d", Fleet: "f"})
	if err != nil || len(gs) != 1 || gs[0].Rule != "own" {
		t.Fatalf("grants %+v, %v: want only the policy's own grant", gs, err)
	}
	rep, err := p.Test(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("tests %+v, %v: want them to run against policy and tests together", rep, err)
	}
}

// TestPolicyTestsReturnAtDeadlineInsideOneCall: a test stuck in one
// built-in call that ignores the deadline does not hold the test run (and
// the activation or test request) past its bound.
func TestPolicyTestsReturnAtDeadlineInsideOneCall(t *testing.T) {
	src := oneLongCall(t).Source()
	src.Tests = "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_slow if { count(authz.grants) == 1 with input as {\"device\": {\"id\": \"slow\"}} }\n"
	p, err := policy.Compile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := p.Test(ctx)
	if took := time.Since(start); fault.CodeOf(err) != policy.Timeout || rep.OK() || took > time.Second {
		t.Fatalf("tests %+v, %v after %v: want policy_timeout near 200ms", rep, err, took)
	}
}
