package policy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
)

func TestDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Test(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Passed < 6 {
		t.Fatalf("default policy tests: %+v", rep)
	}
	cases := []struct {
		name  string
		dev   policy.Device
		want  []string // action filter
		avoid []string
	}{
		{"sensor", policy.Device{ID: "temp-1", Fleet: "plant", Roles: []string{"telemetry"}},
			[]string{"publish fleets/plant/devices/temp-1/telemetry/#", "publish fleets/plant/devices/temp-1/state/#",
				"publish fleets/plant/devices/temp-1/events/#", "subscribe fleets/plant/devices/temp-1/cmd/#",
				"subscribe fleets/plant/broadcast/#"},
			[]string{"publish fleets/plant/devices/+/cmd/#"}},
		{"controller", policy.Device{ID: "ctl-1", Fleet: "plant", Roles: []string{"command"}},
			[]string{"publish fleets/plant/devices/+/cmd/#", "subscribe fleets/plant/devices/ctl-1/cmd/#"},
			[]string{"publish devices/+/cmd/#", "publish fleets/+/devices/+/cmd/#"}},
		{"no roles, nil labels", policy.Device{ID: "x", Fleet: "f"}, []string{"publish fleets/f/devices/x/telemetry/#"},
			[]string{"publish fleets/f/devices/+/cmd/#"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := p.Grants(ctx, tc.dev)
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]policy.Grant{}
			for _, g := range gs {
				have[string(g.Action)+" "+g.Filter] = g
			}
			for _, w := range tc.want {
				if _, ok := have[w]; !ok {
					t.Errorf("missing grant %q in %v", w, gs)
				}
			}
			for _, a := range tc.avoid {
				if _, ok := have[a]; ok {
					t.Errorf("unexpected grant %q", a)
				}
			}
			if g, ok := have["publish fleets/plant/devices/+/cmd/#"]; ok && (g.MaxQoS != 1 || g.Retain) {
				t.Errorf("command grant %+v, want max_qos 1 and no retain", g)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name     string
		src      policy.Source
		module   string
		line     int
		contains string
	}{
		{"empty", policy.Source{}, "policy", 1, "empty"},
		{"syntax error at its line", policy.Source{Policy: "package gatehouse.authz\n\ngrants contains x if {\n  x := 1 +\n}\n"}, "policy", 5, ""},
		{"wrong package", policy.Source{Policy: "package other\n\ngrants contains 1\n"}, "policy", 1, "package must be gatehouse.authz"},
		{"no grants rule", policy.Source{Policy: "package gatehouse.authz\n\nallow := true\n"}, "policy", 1, "must define the rule grants"},
		{"unsafe variable", policy.Source{Policy: "package gatehouse.authz\n\ngrants contains x if {\n\ty == 1\n}\n"}, "policy", 3, "unsafe"},
		{"error in tests module", policy.Source{Policy: "package gatehouse.authz\n\ngrants contains 1\n", Tests: "package t\n\ntest_x if {\n\t(\n}\n"}, "tests", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Compile(context.Background(), tc.src)
			var ce *policy.CompileError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("err = %v, want *CompileError", err)
			}
			if fault.CodeOf(err) != policy.Invalid {
				t.Fatalf("code %q, want policy_invalid", fault.CodeOf(err))
			}
			p := ce.Problems[0]
			if p.Module != tc.module || (tc.line != 0 && p.Line != tc.line) || p.Column == 0 {
				t.Fatalf("problem %+v, want module %s line %d", p, tc.module, tc.line)
			}
			if tc.contains != "" && !strings.Contains(p.Message, tc.contains) {
				t.Fatalf("message %q lacks %q", p.Message, tc.contains)
			}
		})
	}
}

func TestMalformedGrantsFailClosed(t *testing.T) {
	cases := map[string]string{
		"wildcard misuse":  `grants contains {"action": "publish", "filter": "a/#/b"}`,
		"unknown action":   `grants contains {"action": "delete", "filter": "a"}`,
		"unknown field":    `grants contains {"action": "publish", "filter": "a", "everything": true}`,
		"qos out of range": `grants contains {"action": "publish", "filter": "a", "max_qos": 3}`,
		"not an object":    `grants contains "a/#"`,
		"shared filter":    `grants contains {"action": "subscribe", "filter": "$share/g/a"}`,
	}
	for name, rule := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := policy.Compile(context.Background(), policy.Source{Policy: "package gatehouse.authz\n\n" + rule + "\n"})
			if err != nil {
				t.Fatal(err)
			}
			gs, err := p.Grants(context.Background(), policy.Device{ID: "d", Fleet: "f"})
			if err == nil || fault.CodeOf(err) != policy.Invalid {
				t.Fatalf("grants %v, err %v: want policy_invalid", gs, err)
			}
		})
	}
}

func TestPolicyTestsReportFailures(t *testing.T) {
	src := policy.Source{
		Policy: "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": \"a\"}\n",
		Tests:  "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_ok if { count(authz.grants) == 1 }\n\ntest_bad if { count(authz.grants) == 2 }\n",
	}
	p, err := policy.Compile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Test(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Passed != 1 || rep.Failed != 1 || rep.Results[1].Name != "test_bad" || rep.Results[1].Line != 7 {
		t.Fatalf("report %+v", rep)
	}
}

func BenchmarkGrants(b *testing.B) {
	ctx := context.Background()
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		b.Fatal(err)
	}
	d := policy.Device{ID: "temp-1", Fleet: "plant", Roles: []string{"telemetry"}}
	for b.Loop() {
		if _, err := p.Grants(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
}
