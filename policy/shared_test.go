package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/policy"
)

const sharedHead = "package gatehouse.authz\n\n"

// sharedCases: whether the partial evaluation finds the id used only as
// spliced text. Each false case is a way the id could change a decision
// other than by substitution.
var sharedCases = []struct {
	name   string
	rules  string
	shared bool
}{
	{"default policy", "", true},
	{"no id at all", `grants contains {"action": "publish", "filter": concat("/", ["f", input.device.fleet, "#"]), "rule": "r"}`, true},
	{"id in concat", `grants contains {"action": "publish", "filter": concat("/", ["d", input.device.id, "#"]), "rule": "r"}`, true},
	{"id in sprintf %s", `grants contains {"action": "publish", "filter": sprintf("d/%s/%v/#", [input.device.id, input.device.fleet]), "rule": "r"}`, true},
	{"id in rule name", `grants contains {"action": "publish", "filter": "x/#", "rule": concat("-", ["own", input.device.id])}`, true},
	{"id via helper rule", "own := concat(\"/\", [\"d\", input.device.id])\n" + `grants contains {"action": "publish", "filter": concat("/", [own, "#"]), "rule": "r"}`, true},
	{"condition on labels only", `grants contains {"action": "publish", "filter": concat("/", ["s", input.device.labels.site, input.device.id]), "rule": "r"} if input.device.profile == "gw"`, true},
	{"id compared", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if input.device.id == "dev1"`, false},
	{"id not equal", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if input.device.id != "dev1"`, false},
	{"id startswith", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if startswith(input.device.id, "dev")`, false},
	{"id regex", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if regex.match("^d[0-9]+$", input.device.id)`, false},
	{"id lookup", "m := {\"dev1\": \"a\"}\n" + `grants contains {"action": "publish", "filter": m[input.device.id], "rule": "r"}`, false},
	{"id in sprintf %d", `grants contains {"action": "publish", "filter": sprintf("d/%d", [input.device.id]), "rule": "r"}`, false},
	{"id in sprintf width", `grants contains {"action": "publish", "filter": sprintf("d/%10s", [input.device.id]), "rule": "r"}`, false},
	{"id upper", `grants contains {"action": "publish", "filter": upper(input.device.id), "rule": "r"}`, false},
	{"id length", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if count(input.device.id) > 3`, false},
	{"id as key", `grants contains {"action": "publish", "filter": "x", "rule": "r", input.device.id: 1}`, false},
	{"device whole", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if count(object.keys(input.device)) > 1`, false},
	{"device dynamic", `grants contains {"action": "publish", "filter": input.device[k], "rule": "r"} if some k in input.device.roles`, false},
	{"device constant step", `grants contains {"action": "publish", "filter": input.device[k], "rule": "r"} if some k in ["id"]`, true},
	{"negated", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if not input.device.id == "a"`, false},
	{"helper compared", "own := concat(\"/\", [\"d\", input.device.id])\n" + `grants contains {"action": "publish", "filter": "x", "rule": "r"} if own == "d/dev1"`, false},
	{"grants counted", "g contains concat(\"/\", [\"d\", input.device.id])\n" + `grants contains {"action": "publish", "filter": "x", "rule": "r"} if count(g) == 1`, false},
	{"id in set concat", `grants contains {"action": "publish", "filter": concat("/", {"a", input.device.id}), "rule": "r"}`, false},
	{"id in comprehension", `grants contains {"action": "publish", "filter": "x", "rule": "r"} if count([c | some c in ["a"]; c == input.device.id]) == 0`, false},
}

func TestSharedAnalysis(t *testing.T) {
	for _, tc := range sharedCases {
		t.Run(tc.name, func(t *testing.T) {
			src := policy.Default()
			if tc.rules != "" {
				src = policy.Source{Policy: sharedHead + tc.rules + "\n"}
			}
			p, err := policy.Compile(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			if p.Analyze(context.Background()) != tc.shared {
				t.Fatalf("Shared() = %v, want %v", p.Shared(), tc.shared)
			}
		})
	}
}

// TestSharedAnalysisBounded: partial evaluation runs what is constant; a
// constant runaway makes the policy per-device within the analysis bound
// instead of hanging the activation.
func TestSharedAnalysisBounded(t *testing.T) {
	src := policy.Source{Policy: sharedHead + `grants contains {"action": "publish", "filter": concat("/", ["d", input.device.id]), "rule": "r"} if {
	count([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i * j == -1]) == 0
}
`}
	start := time.Now()
	p, err := policy.Compile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Compile took %v", took)
	}
	if p.Shared() {
		t.Fatal("Shared() before Analyze")
	}
	start = time.Now()
	if p.Analyze(context.Background()) {
		// Finished within the bound on a fast machine: then it must be
		// right, the id is only spliced.
		t.Log("analysis finished within its bound")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Analyze took %v", took)
	}
}
