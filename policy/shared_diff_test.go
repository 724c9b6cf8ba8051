package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/policy"
)

// Pieces of random policies: filter parts, whole filter expressions, rule
// names and conditions, many of them touching the id in ways that must
// make the policy per-device (conditions, lookups, other built-ins).
var (
	genParts = []string{`"fleets"`, `input.device.fleet`, `input.device.id`, `input.device.profile`,
		`input.device.labels.site`, `"x"`, `"+"`, `"d1"`, `own`}
	// The first safeFilters filters and safeConds conditions keep a policy
	// shared; half the policies use only those.
	genFilters = []string{
		`sprintf("%s/%s/#", [input.device.fleet, input.device.id])`,
		`sprintf("t/%v", [input.device.id])`,
		`concat("/", ["fleets", input.device.fleet, "devices", "+", "cmd", "#"])`,
		`"fleets/x/devices/d1/state/#"`,
		`sprintf("t/%q", [input.device.id])`,
		`sprintf("t/%x", [input.device.id])`,
		`concat("/", ["m", lookup[input.device.id]])`,
		`concat("/", ["u", upper(input.device.id)])`,
		`concat("/", ["n", trim_prefix(input.device.id, "d")])`,
		`concat("/", ["s", substring(input.device.id, 0, 2)])`,
	}
	genRules = []string{`"r1"`, `"r2"`, `concat("-", ["own", input.device.id])`, `sprintf("by-%s", [input.device.profile])`}
	genConds = []string{
		`"command" in input.device.roles`, `input.device.profile == "gw"`,
		`input.device.labels.site == "s1"`, `some r in input.device.roles; startswith(r, "c")`,
		`input.device.id == "d1"`, `input.device.id != "d15"`, `startswith(input.device.id, "d1")`,
		`endswith(input.device.id, "5")`, `regex.match("^d[0-9]*5$", input.device.id)`, `lookup[input.device.id]`,
		`count(input.device.id) > 2`, `own == "fleets/f1/devices/d1"`, `not input.device.id == "x"`,
		`contains(input.device.id, input.device.fleet)`,
	}
	safeFilters, safeConds = 4, 4
	genIDs                 = []string{"d1", "d15", "d2", "x", "gw-7", "dev.9", "f1", "d1d1", "S:1", "d_5"}
	genFleets              = []string{"f1", "f2", "d1"}
	genSites               = []string{"s1", "s2"}
	genProfile             = []string{"gw", "sensor"}
)

// genPolicy builds a random policy of 1–5 grant rules.
func genPolicy(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteString(sharedHead)
	b.WriteString("own := concat(\"/\", [\"fleets\", input.device.fleet, \"devices\", input.device.id])\n")
	b.WriteString("lookup := {\"d1\": \"one\", \"d15\": \"fifteen\", \"x\": \"ex\"}\n")
	nf, nc := len(genFilters), len(genConds)
	if rng.IntN(2) == 0 {
		nf, nc = safeFilters, safeConds
	}
	for range 1 + rng.IntN(5) {
		filter := genFilters[rng.IntN(nf)]
		if rng.IntN(2) == 0 {
			parts := make([]string, 1+rng.IntN(4))
			for i := range parts {
				parts[i] = genParts[rng.IntN(len(genParts))]
			}
			filter = fmt.Sprintf("concat(\"/\", [%s])", strings.Join(parts, ", "))
		}
		action := []string{"publish", "subscribe"}[rng.IntN(2)]
		fmt.Fprintf(&b, "grants contains {\"action\": %q, \"filter\": %s, \"rule\": %s, \"max_qos\": %d, \"retain\": %v}",
			action, filter, genRules[rng.IntN(len(genRules))], rng.IntN(3), rng.IntN(2) == 0)
		if n := rng.IntN(3); n > 0 {
			b.WriteString(" if {\n")
			for range n {
				b.WriteString("\t" + genConds[rng.IntN(nc)] + "\n")
			}
			b.WriteString("}")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func genDevice(rng *rand.Rand) policy.Device {
	d := policy.Device{
		ID:      genIDs[rng.IntN(len(genIDs))],
		Fleet:   genFleets[rng.IntN(len(genFleets))],
		Profile: genProfile[rng.IntN(len(genProfile))],
		Labels:  map[string]string{"site": genSites[rng.IntN(len(genSites))]},
	}
	if rng.IntN(2) == 0 {
		d.Roles = []string{"command"}
	}
	return d
}

// canonical sorts grants in the decision order and drops duplicates: two
// grant lists that are equal so decide every request alike.
func canonical(gs []policy.Grant) []policy.Grant {
	gs = slices.Clone(gs)
	slices.SortFunc(gs, func(x, y policy.Grant) int { return policy.CompareGrants(&x, &y) })
	return slices.Compact(gs)
}

// checkShared compares the class's shared grants, filled in for d.ID,
// with d's grants evaluated per device. A class the policy does not share
// is evaluated per device by the core, so there is nothing to compare.
func checkShared(t *testing.T, p *policy.Policy, d policy.Device) (compared bool) {
	t.Helper()
	ctx := context.Background()
	want, wantErr := p.Grants(ctx, d)
	if !p.Shared() || !policy.SharedID(d.ID) {
		return false
	}
	tmpl, err := p.ClassGrants(ctx, d)
	if err == policy.ErrNotShared {
		return false
	}
	if err != nil || wantErr != nil {
		t.Fatalf("device %+v: shared error %v, per-device error %v\npolicy:\n%s", d, err, wantErr, p.Source().Policy)
	}
	got := make([]policy.Grant, len(tmpl.Grants))
	for i := range got {
		got[i] = tmpl.Fill(i, d.ID)
	}
	if g, w := canonical(got), canonical(want); !slices.Equal(g, w) {
		t.Fatalf("device %+v:\nshared     %+v\nper-device %+v\npolicy:\n%s", d, g, w, p.Source().Policy)
	}
	return true
}

// TestSharedGrantsEqualPerDevice: over random policies and devices, the
// shared grants of a device are exactly its per-device grants.
func TestSharedGrantsEqualPerDevice(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	var shared, compared, policies int
	for range 300 {
		p, err := policy.Compile(context.Background(), policy.Source{Policy: genPolicy(rng)})
		if err != nil {
			continue // a generated rule set may conflict; the generator is blunt
		}
		policies++
		if p.Analyze(context.Background()) {
			shared++
		}
		for range 20 {
			if checkShared(t, p, genDevice(rng)) {
				compared++
			}
		}
	}
	// The generator must exercise both sides, or the test proves nothing.
	if shared < policies/10 || shared > policies*9/10 || compared < 500 {
		t.Fatalf("%d policies, %d shared, %d comparisons: the generator is off balance", policies, shared, compared)
	}
	t.Logf("%d policies, %d shared, %d shared-vs-per-device comparisons", policies, shared, compared)
}

// FuzzSharedGrants: the same property for fuzzed generator seeds and ids.
func FuzzSharedGrants(f *testing.F) {
	f.Add(uint64(1), "d1")
	f.Add(uint64(7), "x")
	f.Add(uint64(42), "fleets")
	f.Fuzz(func(t *testing.T, seed uint64, id string) {
		rng := rand.New(rand.NewPCG(seed, 13))
		p, err := policy.Compile(context.Background(), policy.Source{Policy: genPolicy(rng)})
		if err != nil {
			return
		}
		p.Analyze(context.Background())
		d := genDevice(rng)
		d.ID = id
		checkShared(t, p, d)
	})
}
